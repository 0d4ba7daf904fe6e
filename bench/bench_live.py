"""Live ingestion on the real clock: a local market shaped like Binance's futures API makes a
new 1-minute bar for each of N crypto symbols every minute; the live poller runs at each
minute (as the "live: poll" schedule does), in W worker processes sharing the market
(`live_poll(shard=...)`). Reports the lag from each bar's close to its stored features
(median, 95th percentile, max) and the busiest 60-second window of request weight against
the Binance budget the limiter enforces.

The lag is from the bar's close to the commit that first stored its features: after each
poll a worker reads its series' `live_series` rows (newest bar, when its features were
stored) and every bar up to the newest counts as stored then. (`market_data_v2.computed_at`
would not do: a bar whose statistics arrive a few polls later is recomputed then, and its
`computed_at` moves on.)

Run: `python bench/bench_live.py [SYMBOLS] [MINUTES] [WORKERS]` (defaults 500, 5, 2), or
`make bench-live`. Uses the configured database: its BINANCE provider is pointed at the
local server for the run and restored afterwards; the symbols it makes (LB000...) and their
rows are deleted at the end."""

from __future__ import annotations

import logging
import multiprocessing
import os
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mytrader.settings")

import django  # noqa: E402

django.setup()

from django.db import connection, connections  # noqa: E402
from pytest_httpserver import HTTPServer  # noqa: E402

from enrichment.candles.models import LiveMarket  # noqa: E402
from enrichment.candles.services.live import live_markets_ensure, live_poll  # noqa: E402
from enrichment.candles.tests.live_server import LiveMarketServer  # noqa: E402
from etl.models import AssetClass, DataProvider, Market, MarketData, Symbol, SymbolMapping  # noqa: E402
from etl.services import reference_data_bootstrap  # noqa: E402

PREFIX = "LB"
# Unmeasured polls between the history and the measured ones: the first catches up the two or
# three bars that closed while the workers fetched their history (with their statistics: a
# minute at the budget), the second is the first of the steady state.
SETTLE = 2


def setup(symbols: int, url: str) -> dict:
    reference_data_bootstrap()
    live_markets_ensure()
    binance = DataProvider.objects.get(code="BINANCE")
    saved = {"base_url": binance.base_url, "is_enabled": binance.is_enabled}
    DataProvider.objects.filter(pk=binance.pk).update(base_url=url, is_enabled=True)
    market = Market.objects.get(code="BINANCE")
    crypto = AssetClass.objects.get(code="CRYPTO")
    made = Symbol.objects.bulk_create(
        [Symbol(ticker=f"{PREFIX}{i:03d}", market=market, asset_class=crypto) for i in range(symbols)]
    )
    SymbolMapping.objects.bulk_create(
        [SymbolMapping(symbol=s, provider=binance, provider_symbol=f"{s.ticker}USDT") for s in made]
    )
    others = Symbol.objects.filter(market=market).exclude(ticker__startswith=PREFIX)
    saved["inactive"] = list(others.filter(is_active=True).values_list("pk", flat=True))
    others.update(is_active=False)  # only the bench's symbols are polled
    live = LiveMarket.objects.get(market=market)
    saved["live"] = {"is_enabled": live.is_enabled}
    LiveMarket.objects.filter(pk=live.pk).update(is_enabled=True)
    LiveMarket.objects.exclude(pk=live.pk).filter(is_enabled=True).update(is_enabled=False)
    return saved


def teardown(saved: dict) -> None:
    bench = Symbol.objects.filter(ticker__startswith=PREFIX, market__code="BINANCE")
    with connection.cursor() as cur:
        ids = list(bench.values_list("pk", flat=True))
        for table in ("market_data_v2", "data_quality_metrics", "enrichment_status", "enrichment_compute_log"):
            cur.execute(f"DELETE FROM {table} WHERE symbol_id = ANY(%s)", [ids])  # noqa: S608 - constants
    MarketData.objects.filter(symbol__in=bench).delete()
    bench.delete()
    Symbol.objects.filter(pk__in=saved["inactive"]).update(is_active=True)
    DataProvider.objects.filter(code="BINANCE").update(base_url=saved["base_url"], is_enabled=saved["is_enabled"])
    LiveMarket.objects.filter(market__code="BINANCE").update(**saved["live"])


def worker(index: int, count: int, minutes: int, ready, go, start, out) -> None:
    """One worker process: the initial history of its share (not measured), then, from the
    minute the main process names once every worker has its history, a poll at each minute
    boundary (+1 s): SETTLE polls that catch up the bars that closed meanwhile (not measured),
    then `minutes` measured ones; puts the lags of the bars measured."""
    connections.close_all()
    live_poll(markets=["BINANCE"], shard=(index, count))
    ready.put(time.time())
    go.wait()
    start_at = start.value
    since = datetime.fromtimestamp(start_at - 1, tz=UTC)
    newest = stored_state(index, count)
    lags = []
    for minute in range(-SETTLE, minutes + 1):
        wake = start_at + 60 * minute
        time.sleep(max(0.0, wake - time.time()))
        live_poll(markets=["BINANCE"], shard=(index, count))
        now = stored_state(index, count)
        for sid, (last_bar, stored_at) in now.items():
            bar = newest.get(sid, (since - timedelta(minutes=1), None))[0] + timedelta(minutes=1)
            while bar <= last_bar:  # every bar since the previous newest was stored with it
                if bar >= since:
                    lags.append((stored_at - (bar + timedelta(minutes=1))).total_seconds())
                bar += timedelta(minutes=1)
        newest = now
    out.put(lags)


def stored_state(index: int, count: int) -> dict[int, tuple[datetime, datetime]]:
    """Each of the shard's series: (newest stored bar, when its features were stored)."""
    with connection.cursor() as cur:
        cur.execute(
            """SELECT l.symbol_id, l.last_bar_ts, l.last_stored_at FROM live_series l
               JOIN symbols s ON s.id = l.symbol_id
               WHERE s.ticker LIKE %s AND l.timeframe = '1m' AND l.symbol_id %% %s = %s
               AND l.last_bar_ts IS NOT NULL""",
            [f"{PREFIX}%", count, index],
        )
        return {r[0]: (r[1], r[2]) for r in cur.fetchall()}


def busiest_window(log: list[tuple[float, str, int]], since: float) -> int:
    """The largest request weight in any 60-second window after `since`."""
    events = sorted((t, w) for t, _, w in log if t >= since)
    best, total, left = 0, 0, 0
    for t, w in events:
        total += w
        while events[left][0] <= t - 60:
            total -= events[left][1]
            left += 1
        best = max(best, total)
    return best


def main(symbols: int, minutes: int, workers: int) -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    market = LiveMarketServer(now_ms=lambda: int(time.time() * 1000))
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    market.register(server)
    server.start()
    saved = setup(symbols, server.url_for("").rstrip("/"))
    try:
        # The workers first fetch the history each series starts with (not measured); the
        # settling polls start on the second minute boundary after the last of them is done, so
        # that no 60-second window holds both (the history's calls fill the budget for minutes).
        ready, results, go = multiprocessing.Queue(), multiprocessing.Queue(), multiprocessing.Event()
        start = multiprocessing.Value("d", 0.0)
        processes = [
            multiprocessing.Process(target=worker, args=(i, workers, minutes, ready, go, start, results))
            for i in range(workers)
        ]
        connections.close_all()
        for process in processes:
            process.start()
        warmed = max(ready.get(timeout=3600) for _ in processes)
        start.value = start_at = (warmed // 60 + 2 + SETTLE) * 60 + 1
        go.set()
        measured = sorted(lag for _ in processes for lag in results.get(timeout=60 * minutes + 1800))
        for process in processes:
            process.join()
        budget = DataProvider.objects.get(code="BINANCE").rate_limit_per_minute
        peak = busiest_window(market.request_log, start_at - 1)
        extras = [(t, p, w) for t, p, w in market.request_log if p != "/fapi/v1/klines"]
        extras_peak = busiest_window(extras, start_at - 1)
        overall = busiest_window(market.request_log, 0)  # the history's catch-up included
        per_minute = {}
        for t, path, w in market.request_log:
            if t >= start_at - 1:
                weight, calls = per_minute.setdefault(int(t - start_at + 1) // 60, (0, Counter()))
                calls["stats" if path.startswith("/futures/") else path] += 1
                per_minute[int(t - start_at + 1) // 60] = (weight + w, calls)
    finally:
        server.stop()
        teardown(saved)
    p95 = measured[int(0.95 * (len(measured) - 1))] if measured else float("nan")
    print(f"symbols {symbols}, minutes {minutes}, workers {workers}, bars measured {len(measured)}")
    if measured:
        print(
            f"lag bar close -> features stored: median {statistics.median(measured):.1f} s, "
            f"p95 {p95:.1f} s, max {measured[-1]:.1f} s (target 30 s)"
        )
    print(f"busiest 60 s of Binance request weight: {peak} (budget {budget}/min), of it statistics: {extras_peak}")
    print(f"busiest 60 s including the initial history: {overall}")
    print("minute: weight (klines, statistics, funding calls)")
    for minute, (weight, calls) in sorted(per_minute.items()):
        print(f"  +{minute}: {weight} ({calls['/fapi/v1/klines']}, {calls['stats']}, {calls['/fapi/v1/fundingRate']})")
    print(f"p95 under 30 s: {p95 < 30}; within the rate limit: {peak <= budget}")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*(args + [500, 5, 2][len(args) :]))
