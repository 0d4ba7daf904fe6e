"""Asset enrichment of 10,000 symbols against a local server shaped like Yahoo's v7 quote
(with its cookie and crumb) and CoinMarketCap's info API, each enforcing the provider's
published rate limit (Yahoo about 100 requests a minute, CoinMarketCap's basic plan 30):
a request beyond it gets HTTP 429 with Retry-After.

Prints the wall time, the calls each provider received and the 429s it sent. Runs in a
scratch database (<your database>_bench_enrich) created and dropped by the script.
Run: `python bench/bench_enrich.py [--symbols 10000] [--crypto-share 0.3]`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mytrader.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import setup_databases, teardown_databases  # noqa: E402
from pytest_httpserver import HTTPServer  # noqa: E402
from werkzeug import Request, Response  # noqa: E402

from enrichment.assets.services.enrich import assets_enrich  # noqa: E402
from enrichment.assets.services.enrich_options import EnrichOptions  # noqa: E402
from etl.models import AssetClass, DataProvider, Market, Symbol  # noqa: E402

# The published limits the server enforces, per minute (sliding window).
SERVER_LIMITS = {"YAHOO_FINANCE": 100, "COINMARKETCAP": 30}
CRUMB = "bEnCh.CrUmB1"


class RateLimitedServer:
    """Counts calls per provider and answers 429 (Retry-After) beyond its limit."""

    def __init__(self) -> None:
        self.calls = dict.fromkeys(SERVER_LIMITS, 0)
        self.throttled = dict.fromkeys(SERVER_LIMITS, 0)
        self.first_429_at: dict[str, float] = {}
        self._seen: dict[str, deque[float]] = {code: deque() for code in SERVER_LIMITS}
        self._lock = threading.Lock()
        self.started = time.monotonic()

    def admit(self, code: str) -> Response | None:
        with self._lock:
            now = time.monotonic()
            self.calls[code] += 1
            seen = self._seen[code]
            while seen and seen[0] <= now - 60:
                seen.popleft()
            if len(seen) >= SERVER_LIMITS[code]:
                self.throttled[code] += 1
                self.first_429_at.setdefault(code, now - self.started)
                wait = max(1, int(seen[0] + 60 - now) + 1)
                return Response("Too Many Requests", status=429, headers={"Retry-After": str(wait)})
            seen.append(now)
            return None

    def quote(self, request: Request) -> Response:
        refused = self.admit("YAHOO_FINANCE")
        if refused:
            return refused
        if request.args.get("crumb") != CRUMB:
            return Response('{"finance": {"error": {"code": "Unauthorized"}}}', status=401)
        rows = [
            {
                "symbol": symbol,
                "longName": f"{symbol} Holdings",
                "quoteType": "CRYPTOCURRENCY" if symbol.endswith("-USD") else "EQUITY",
                "currency": "USD",
                "marketCap": 1_000_000_000,
                "exchangeTimezoneName": "UTC" if symbol.endswith("-USD") else "America/New_York",
                "fullExchangeName": "NasdaqGS",
            }
            for symbol in request.args.get("symbols", "").split(",")
            if symbol
        ]
        return _json({"quoteResponse": {"result": rows, "error": None}})

    def crumb(self, request: Request) -> Response:
        return self.admit("YAHOO_FINANCE") or Response(CRUMB, content_type="text/plain")

    def cmc_info(self, request: Request) -> Response:
        refused = self.admit("COINMARKETCAP")
        if refused:
            return refused
        data = {
            symbol: {
                "id": i,
                "name": f"{symbol} coin",
                "symbol": symbol,
                "slug": symbol.lower(),
                "category": "coin",
                "description": f"{symbol} is a coin.",
                "urls": {"website": [f"https://{symbol.lower()}.example.org/"]},
                "tags": [],
            }
            for i, symbol in enumerate(request.args.get("symbol", "").split(","))
            if symbol
        }
        return _json({"status": {"error_code": 0, "error_message": None}, "data": data})


def _json(payload: dict) -> Response:
    return Response(json.dumps(payload), content_type="application/json")


def make_symbols(total: int, crypto_share: float) -> int:
    """Synthetic tickers the offline catalogue does not know, so every name comes from the server."""
    crypto = int(total * crypto_share)
    binance = Market.objects.get(code="BINANCE")
    nasdaq, nyse = Market.objects.get(code="NASDAQ"), Market.objects.get(code="NYSE")
    classes = {c.code: c for c in AssetClass.objects.all()}
    rows = [
        Symbol(
            ticker=f"Q{i:05d}USDT",
            market=binance,
            asset_class=classes["CRYPTO"],
            base_currency=f"Q{i:05d}",
            quote_currency="USDT",
        )
        for i in range(crypto)
    ]
    for i in range(total - crypto):
        market = nasdaq if i % 2 else nyse
        rows.append(Symbol(ticker=f"ZX{i:05d}", market=market, asset_class=classes[f"STOCK_{market.code}"]))
    Symbol.objects.bulk_create(rows, batch_size=5000)
    return crypto


def run(total: int, crypto_share: float, batch_size: int) -> None:
    from etl import services

    services.reference_data_bootstrap()
    server = RateLimitedServer()
    http = HTTPServer(host="127.0.0.1", port=0)
    http.expect_request("/").respond_with_data("", status=404, headers={"Set-Cookie": "A3=d=bench; Path=/"})
    http.expect_request("/v1/test/getcrumb").respond_with_handler(server.crumb)
    http.expect_request("/v7/finance/quote").respond_with_handler(server.quote)
    http.expect_request("/v1/cryptocurrency/info").respond_with_handler(server.cmc_info)
    http.start()
    try:
        settings.PROVIDER_API_KEYS = {**settings.PROVIDER_API_KEYS, "COINMARKETCAP": "bench-key"}
        DataProvider.objects.update(is_enabled=False)
        DataProvider.objects.filter(code__in=SERVER_LIMITS).update(
            is_enabled=True, base_url=http.url_for("").rstrip("/")
        )
        crypto = make_symbols(total, crypto_share)
        print(
            f"{total:,} symbols ({crypto:,} crypto pairs, {total - crypto:,} US stocks); server limits {SERVER_LIMITS}"
        )
        budgets = dict(DataProvider.objects.filter(code__in=SERVER_LIMITS).values_list("code", "rate_limit_per_minute"))
        print(f"our budgets per minute (the provider records): {budgets}")
        started = time.perf_counter()
        result = assets_enrich(
            options=EnrichOptions(concurrency=2, batch_size=batch_size, sources=(*SERVER_LIMITS, "LOCAL")), bar=True
        )
        elapsed = time.perf_counter() - started
    finally:
        http.clear()
        http.stop()
    named = Symbol.objects.exclude(name="").count()
    print(f"wall time: {elapsed:.1f}s ({elapsed / 60:.1f} min, target < 10 min)")
    print(f"outcomes: enriched {result.enriched:,}, partial {result.partial:,}, failed {result.failed:,}")
    print(f"symbols with a name: {named:,} of {total:,}")
    for code in SERVER_LIMITS:
        first = server.first_429_at.get(code)
        when = f", first at {first:.0f}s" if first is not None else ""
        print(f"{code}: {server.calls[code]:,} calls received, {server.throttled[code]:,} answered 429{when}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=10_000)
    parser.add_argument("--crypto-share", type=float, default=0.3)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("enrichment").setLevel(logging.WARNING)
    db = settings.DATABASES["default"]
    db.setdefault("TEST", {})["NAME"] = f"{db['NAME']}_bench_enrich"
    old_config = setup_databases(verbosity=0, interactive=False)
    try:
        run(args.symbols, args.crypto_share, args.batch_size)
    finally:
        connection.close()
        teardown_databases(old_config, verbosity=0)


if __name__ == "__main__":
    main()
