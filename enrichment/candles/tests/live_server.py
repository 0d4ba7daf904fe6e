"""A local market shaped like Binance USD-M futures and Yahoo's v8 chart: every symbol gets
a new 1-minute bar each minute of its clock (a fake one in the tests, the real one in
`bench/bench_live.py`). Bars are a deterministic function of (symbol, minute), so a test can
tell exactly what a provider served; the bar still forming is served too, as the real APIs
do. Stock bars exist only in the New York session (weekdays 14:30-21:00 UTC, winter time)."""

from __future__ import annotations

import json
import math
import re
import threading
import zlib
from collections.abc import Callable
from datetime import UTC, datetime

from werkzeug.wrappers import Request, Response

MINUTE_MS = 60_000
FIVE_MINUTES_MS = 300_000
FUNDING_MS = 8 * 3_600_000


def _seed(symbol: str) -> int:
    return zlib.crc32(symbol.encode()) % 997


def bar(symbol: str, minute: int) -> dict[str, float]:
    """The bar opening at `minute` (minutes since 1970) of `symbol`."""
    seed = _seed(symbol)

    def close(m: int) -> float:
        return round(100 + seed / 10 + 5 * math.sin(m / 17 + seed) + (m % 13) * 0.01, 4)

    o, c = close(minute - 1), close(minute)
    volume = 100.0 + (minute * 37 + seed) % 50
    return {
        "open": o,
        "high": round(max(o, c) + 0.05, 4),
        "low": round(min(o, c) - 0.05, 4),
        "close": c,
        "volume": volume,
        "taker_buy_volume": round(volume * (0.3 + ((minute * 11 + seed) % 40) / 100), 4),
    }


def in_stock_session(minute: int) -> bool:
    moment = datetime.fromtimestamp(minute * 60, tz=UTC)
    return moment.weekday() < 5 and (14 * 60 + 30) <= moment.hour * 60 + moment.minute < 21 * 60


class LiveMarketServer:
    """Handlers for the endpoints the live poller calls; `now_ms` is the market's clock.
    Counts requests per path so that a test or the benchmark can check what was asked."""

    def __init__(self, now_ms: Callable[[], int]):
        self.now_ms = now_ms
        self.requests: dict[str, int] = {}
        self.request_log: list[tuple[float, str, int]] = []  # (server time s, path, Binance weight)
        self.symbol_log: list[tuple[float, str, str]] = []  # (server time s, path, symbol)
        self.broken: set[str] = set()  # symbols whose klines come with a close of NaN
        self._lock = threading.Lock()

    def _count(self, request: Request) -> None:
        weight = 1
        if request.path == "/fapi/v1/klines":
            limit = int(request.args.get("limit", 500))
            weight = 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10
        with self._lock:
            self.requests[request.path] = self.requests.get(request.path, 0) + 1
            self.request_log.append((self.now_ms() / 1000, request.path, weight))
            self.symbol_log.append((self.now_ms() / 1000, request.path, request.args.get("symbol", "")))

    @staticmethod
    def _json(payload) -> Response:
        return Response(json.dumps(payload), content_type="application/json")

    def _minutes(self, start_ms: int, end_ms: int, limit: int) -> list[int]:
        """Minutes whose bar has opened by now and whose open time is in [start, end]."""
        first = -(-start_ms // MINUTE_MS)
        last = min(end_ms, self.now_ms()) // MINUTE_MS
        return list(range(first, last + 1))[:limit]

    def klines(self, request: Request) -> Response:
        self._count(request)
        args = request.args
        symbol = args["symbol"]
        rows = []
        for minute in self._minutes(int(args["startTime"]), int(args["endTime"]), int(args.get("limit", 500))):
            b = bar(symbol, minute)
            open_ms = minute * MINUTE_MS
            rows.append(
                [
                    open_ms,
                    f"{b['open']:.4f}",
                    f"{b['high']:.4f}",
                    f"{b['low']:.4f}",
                    "NaN" if symbol in self.broken else f"{b['close']:.4f}",
                    f"{b['volume']:.3f}",
                    open_ms + MINUTE_MS - 1,
                    f"{b['volume'] * b['close']:.4f}",
                    int(b["volume"]) * 3,
                    f"{b['taker_buy_volume']:.4f}",
                    f"{b['taker_buy_volume'] * b['close']:.4f}",
                    "0",
                ]
            )
        return self._json(rows)

    def _stamps(self, request: Request, step_ms: int, offset_ms: int = 0) -> list[int]:
        start, end = int(request.args["startTime"]), min(int(request.args["endTime"]), self.now_ms())
        first = -(-(start - offset_ms) // step_ms) * step_ms + offset_ms
        return list(range(first, end + 1, step_ms))[: int(request.args.get("limit", 500))]

    def funding(self, request: Request) -> Response:
        self._count(request)
        symbol = request.args["symbol"]
        rows = [
            {
                "symbol": symbol,
                "fundingTime": t,
                "fundingRate": f"{1e-4 * (1 + math.sin(t / FUNDING_MS + _seed(symbol))):.8f}",
                "markPrice": "100",
            }
            for t in self._stamps(request, FUNDING_MS, offset_ms=5)
        ]
        return self._json(rows)

    def open_interest(self, request: Request) -> Response:
        self._count(request)
        symbol = request.args["symbol"]
        rows = [
            {"symbol": symbol, "sumOpenInterest": f"{1e6 + t // MINUTE_MS % 1000:.1f}", "timestamp": t}
            for t in self._stamps(request, FIVE_MINUTES_MS)
        ]
        return self._json(rows)

    def long_short(self, request: Request) -> Response:
        self._count(request)
        symbol = request.args["symbol"]
        rows = []
        for t in self._stamps(request, FIVE_MINUTES_MS):
            ratio = 1 + (t // FIVE_MINUTES_MS % 50) / 100
            rows.append(
                {
                    "symbol": symbol,
                    "longShortRatio": f"{ratio:.4f}",
                    "longAccount": f"{ratio / (1 + ratio):.4f}",
                    "shortAccount": f"{1 / (1 + ratio):.4f}",
                    "timestamp": str(t),
                }
            )
        return self._json(rows)

    def chart(self, request: Request) -> Response:
        self._count(request)
        symbol = request.path.rsplit("/", 1)[-1]
        start_ms, end_ms = int(request.args["period1"]) * 1000, int(request.args["period2"]) * 1000 - 1
        minutes = [m for m in self._minutes(start_ms, end_ms, 10_000) if in_stock_session(m)]
        bars = [bar(symbol, m) for m in minutes]
        quote = {k: [b[k] for b in bars] for k in ("open", "high", "low", "close", "volume")}
        meta = {"currency": "USD", "symbol": symbol, "exchangeTimezoneName": "America/New_York"}
        result = {"meta": meta, "timestamp": [m * 60 for m in minutes], "indicators": {"quote": [quote]}}
        return self._json({"chart": {"result": [result], "error": None}})

    def register(self, httpserver) -> None:
        """Point a pytest-httpserver (the fixture, or a started `HTTPServer`) at these handlers."""
        routes = {
            "/fapi/v1/klines": self.klines,
            "/fapi/v1/fundingRate": self.funding,
            "/futures/data/openInterestHist": self.open_interest,
            "/futures/data/globalLongShortAccountRatio": self.long_short,
        }
        for path, handler in routes.items():
            httpserver.expect_request(path).respond_with_handler(handler)
        httpserver.expect_request(re.compile(r"^/v8/finance/chart/.+")).respond_with_handler(self.chart)
