"""Binance USD-M futures: exchangeInfo (listing), klines, funding rate, open
interest history, the global long/short account ratio and taker buy/sell volume.
Public endpoints: no key.

Binance limits by request *weight* per IP per minute and bans (HTTP 418)
clients that ignore its 429s; every call here passes its weight to the shared
rate limiter, so the provider record's budget is a weight budget."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import requests

from enrichment.providers.base import (
    AssetInfo,
    ProviderCandle,
    ProviderClient,
    check_timeframe,
    clean_str,
    to_ms,
    utc_from_ms,
)
from enrichment.providers.errors import FailureReason, ProviderError

KLINES_LIMIT = 1500
FUNDING_LIMIT = 1000
STATS_LIMIT = 500  # openInterestHist, globalLongShortAccountRatio and takerlongshortRatio
STATS_PERIODS = ("5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d")
INTERVAL_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000, "4h": 14_400_000, "1d": 86_400_000}


def klines_weight(limit: int) -> int:
    """GET /fapi/v1/klines weight by `limit` (Binance docs)."""
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


class BinanceClient(ProviderClient):
    code = "BINANCE"
    supports_info = True
    supports_candles = True
    # exchangeInfo lists every contract: one call (cached on the client) answers them all.
    info_batch_size = 10_000

    _exchange_info: dict[str, Any] | None = None

    def client_error_reason(self, response: requests.Response) -> FailureReason:
        try:
            code = response.json().get("code")
        except (ValueError, AttributeError):
            return FailureReason.BAD_REQUEST
        return FailureReason.NOT_FOUND if code == -1121 else FailureReason.BAD_REQUEST  # -1121: Invalid symbol.

    # -- listing --------------------------------------------------------------------
    def exchange_info(self) -> dict[str, Any]:
        if self._exchange_info is None:
            payload = self.get_json("/fapi/v1/exchangeInfo", endpoint="exchangeInfo", weight=1)
            if not isinstance(payload, dict) or not isinstance(payload.get("symbols"), list):
                raise ProviderError(f"{self.code} exchangeInfo: no 'symbols' list", reason=FailureReason.MALFORMED)
            self._exchange_info = payload
        return self._exchange_info

    def list_symbols(self, *, trading_only: bool = True) -> list[dict[str, Any]]:
        """Perpetual and delivery contracts as Binance lists them."""
        rows = [s for s in self.exchange_info()["symbols"] if isinstance(s, dict) and s.get("symbol")]
        if trading_only:
            rows = [s for s in rows if s.get("status") == "TRADING"]
        return rows

    def fetch_asset_info(self, *, provider_symbol: str) -> AssetInfo:
        row = next((s for s in self.list_symbols(trading_only=False) if s["symbol"] == provider_symbol), None)
        if row is None:
            raise ProviderError(
                f"{self.code}: {provider_symbol} is not listed", permanent=True, reason=FailureReason.NOT_FOUND
            )
        return self._info(provider_symbol, row)

    def info_chunk(self, provider_symbols: list[str]) -> dict[str, AssetInfo]:
        listed = {row["symbol"]: row for row in self.list_symbols(trading_only=False)}
        return {s: self._info(s, listed[s]) for s in provider_symbols if s in listed}

    def _info(self, provider_symbol: str, row: dict[str, Any]) -> AssetInfo:
        sub_types = [clean_str(t) for t in row.get("underlyingSubType") or [] if clean_str(t)]
        return AssetInfo(
            provider=self.code,
            provider_symbol=provider_symbol,
            currency=clean_str(row.get("quoteAsset")).upper()[:8],
            category=sub_types[0] if sub_types else clean_str(row.get("underlyingType")).title(),
            extra={
                "base_asset": clean_str(row.get("baseAsset")),
                "quote_asset": clean_str(row.get("quoteAsset")),
                "contract_type": clean_str(row.get("contractType")),
                "status": clean_str(row.get("status")),
            },
        )

    def validate_symbol(self, *, provider_symbol: str) -> bool:
        return any(s["symbol"] == provider_symbol for s in self.list_symbols())

    # -- series ---------------------------------------------------------------------
    def _expect_list(self, payload: Any, endpoint: str) -> list:
        if not isinstance(payload, list):
            raise ProviderError(
                f"{self.code} {endpoint}: expected a list, got {type(payload).__name__}", reason=FailureReason.MALFORMED
            )
        return payload

    def fetch_candles(
        self, *, provider_symbol: str, timeframe: str, start: datetime, end: datetime
    ) -> list[ProviderCandle]:
        """Bars whose open time lies in [start, end], paged by 1500."""
        check_timeframe(timeframe)
        out: list[ProviderCandle] = []
        cursor, end_ms = to_ms(start), to_ms(end)
        while cursor <= end_ms:
            limit = min(KLINES_LIMIT, (end_ms - cursor) // INTERVAL_MS[timeframe] + 1)
            rows = self._expect_list(
                self.get_json(
                    "/fapi/v1/klines",
                    endpoint="klines",
                    symbol=provider_symbol,
                    weight=klines_weight(limit),
                    params={
                        "symbol": provider_symbol,
                        "interval": timeframe,
                        "startTime": cursor,
                        "endTime": end_ms,
                        "limit": limit,
                    },
                ),
                "klines",
            )
            try:
                page = [
                    ProviderCandle(
                        ts=utc_from_ms(r[0]),
                        open=float(r[1]),
                        high=float(r[2]),
                        low=float(r[3]),
                        close=float(r[4]),
                        volume=float(r[5]),
                        quote_volume=float(r[7]),
                        trades=int(r[8]),
                        taker_buy_volume=float(r[9]),
                    )
                    for r in rows
                ]
            except (TypeError, ValueError, IndexError) as exc:
                raise ProviderError(f"{self.code} klines: bad row ({exc})", reason=FailureReason.MALFORMED) from None
            out.extend(c for c in page if to_ms(start) <= to_ms(c.ts) <= end_ms)
            if len(rows) < limit or not page:
                break
            # The next bar opens one interval after the last one: asking from there (not 1 ms
            # later) ends a page that reached `end` without another call.
            cursor = to_ms(page[-1].ts) + INTERVAL_MS[timeframe]
        return out

    def fetch_funding_rates(
        self, *, provider_symbol: str, start: datetime, end: datetime
    ) -> list[tuple[datetime, float]]:
        out: list[tuple[datetime, float]] = []
        cursor, end_ms = to_ms(start), to_ms(end)
        while cursor <= end_ms:
            rows = self._expect_list(
                self.get_json(
                    "/fapi/v1/fundingRate",
                    endpoint="fundingRate",
                    symbol=provider_symbol,
                    params={"symbol": provider_symbol, "startTime": cursor, "endTime": end_ms, "limit": FUNDING_LIMIT},
                ),
                "fundingRate",
            )
            try:
                page = [(int(r["fundingTime"]), float(r["fundingRate"])) for r in rows]
            except (TypeError, ValueError, KeyError) as exc:
                raise ProviderError(
                    f"{self.code} fundingRate: bad row ({exc})", reason=FailureReason.MALFORMED
                ) from None
            out.extend((utc_from_ms(t), rate) for t, rate in page if t <= end_ms)
            if len(rows) < FUNDING_LIMIT or not page:
                break
            cursor = page[-1][0] + 1
        return out

    def _stats(
        self, path: str, endpoint: str, *, provider_symbol: str, period: str, start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        if period not in STATS_PERIODS:
            raise ProviderError(f"{self.code} {endpoint}: unsupported period {period!r}", permanent=True)
        out: list[dict[str, Any]] = []
        cursor, end_ms = to_ms(start), to_ms(end)
        while cursor <= end_ms:
            rows = self._expect_list(
                self.get_json(
                    path,
                    endpoint=endpoint,
                    symbol=provider_symbol,
                    params={
                        "symbol": provider_symbol,
                        "period": period,
                        "startTime": cursor,
                        "endTime": end_ms,
                        "limit": STATS_LIMIT,
                    },
                ),
                endpoint,
            )
            try:
                page = sorted(({**r, "timestamp": int(r["timestamp"])} for r in rows), key=lambda r: r["timestamp"])
            except (TypeError, ValueError, KeyError) as exc:
                raise ProviderError(
                    f"{self.code} {endpoint}: bad row ({exc})", reason=FailureReason.MALFORMED
                ) from None
            out.extend(r for r in page if to_ms(start) <= r["timestamp"] <= end_ms)
            if len(rows) < STATS_LIMIT or not page:
                break
            cursor = page[-1]["timestamp"] + 1
        return out

    def fetch_open_interest(
        self, *, provider_symbol: str, period: str, start: datetime, end: datetime
    ) -> list[tuple[datetime, float]]:
        """Binance serves about the last 30 days only."""
        rows = self._stats(
            "/futures/data/openInterestHist",
            "openInterestHist",
            provider_symbol=provider_symbol,
            period=period,
            start=start,
            end=end,
        )
        try:
            return [(utc_from_ms(r["timestamp"]), float(r["sumOpenInterest"])) for r in rows]
        except (TypeError, ValueError, KeyError) as exc:
            raise ProviderError(
                f"{self.code} openInterestHist: bad row ({exc})", reason=FailureReason.MALFORMED
            ) from None

    def fetch_taker_ratio(
        self, *, provider_symbol: str, period: str, start: datetime, end: datetime
    ) -> list[tuple[datetime, float, float, float]]:
        rows = self._stats(
            "/futures/data/takerlongshortRatio",
            "takerlongshortRatio",
            provider_symbol=provider_symbol,
            period=period,
            start=start,
            end=end,
        )
        try:
            return [
                (utc_from_ms(r["timestamp"]), float(r["buySellRatio"]), float(r["buyVol"]), float(r["sellVol"]))
                for r in rows
            ]
        except (TypeError, ValueError, KeyError) as exc:
            raise ProviderError(
                f"{self.code} takerlongshortRatio: bad row ({exc})", reason=FailureReason.MALFORMED
            ) from None

    def fetch_long_short_ratio(
        self, *, provider_symbol: str, period: str, start: datetime, end: datetime
    ) -> list[tuple[datetime, float]]:
        """The global long/short account ratio (accounts net long over accounts net short);
        Binance serves about the last 30 days only."""
        rows = self._stats(
            "/futures/data/globalLongShortAccountRatio",
            "globalLongShortAccountRatio",
            provider_symbol=provider_symbol,
            period=period,
            start=start,
            end=end,
        )
        try:
            return [(utc_from_ms(r["timestamp"]), float(r["longShortRatio"])) for r in rows]
        except (TypeError, ValueError, KeyError) as exc:
            raise ProviderError(
                f"{self.code} globalLongShortAccountRatio: bad row ({exc})", reason=FailureReason.MALFORMED
            ) from None
