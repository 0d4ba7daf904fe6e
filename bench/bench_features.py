"""Benchmark of the feature side (make bench): every feature on 100,000 candles; the
indicators TA-Lib also has against TA-Lib in the same process; the market_data_v2 write
path for 1,000,000 rows against plain binary COPY into a table of the same shape.

Figures are ratios against a reference measured in the same run (the machine is shared).
The database part runs inside a transaction that is rolled back: nothing is left behind.
"""

from __future__ import annotations

import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mytrader.settings")


def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def candles(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = 1_600_000_000 + np.arange(n, dtype=np.int64) * 3600
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
    volume = rng.uniform(10, 1000, n)
    return {
        "ts": ts,
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "taker_buy_volume": volume * rng.uniform(0.2, 0.8, n),
        "open_interest": 1e6 * np.exp(np.cumsum(rng.normal(0, 0.001, n))),
        "funding_rate": np.where(np.arange(n) % 8 == 0, rng.normal(1e-4, 1e-4, n), np.nan),
        "liquidations": volume * rng.uniform(0, 0.05, n),
    }


def bench_features(n: int = 100_000) -> None:
    import talib

    from enrichment.candles.feature_kernels import compute_features, ta_indicators
    from enrichment.candles.feature_list import FEATURES

    data = candles(n)
    compute_features(data, timeframe_seconds=3600)  # warm caches
    seconds = best_of(lambda: compute_features(data, timeframe_seconds=3600), 40)
    tracemalloc.start()
    compute_features(data, timeframe_seconds=3600)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(
        f"all {len(FEATURES)} features, {n:,} candles: {seconds * 1000:.1f} ms "
        f"({n / seconds:,.0f} candles/s; target < 50 ms) peak {peak / 2**20:.0f} MiB"
    )

    h, l, c, v = data["high"], data["low"], data["close"], data["volume"]  # noqa: E741

    def with_talib():  # the same outputs from the same candles: log returns included
        lr = np.log(c[1:] / c[:-1])
        talib.ATR(h, l, c, 14), talib.RSI(c, 14), talib.SMA(c, 20), talib.SMA(c, 50), talib.EMA(c, 20)
        talib.STDDEV(lr, 20, 1), talib.STDDEV(lr, 50, 1), talib.SMA(v, 20)

    def with_pandas():
        import pandas as pd

        s, vs = pd.Series(c), pd.Series(v)
        ls = np.log(s / s.shift())
        s.rolling(20).mean(), s.rolling(50).mean(), s.ewm(span=20, adjust=False).mean(), vs.rolling(20).mean()
        ls.rolling(20).std(ddof=0), ls.rolling(50).std(ddof=0)
        d = s.diff()
        (
            d.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean(),
            (-d.clip(upper=0)).ewm(alpha=1 / 14, adjust=False).mean(),
        )
        tr = pd.concat([pd.Series(h - l), (pd.Series(h) - s.shift()).abs(), (pd.Series(l) - s.shift()).abs()], axis=1)
        tr.max(axis=1).ewm(alpha=1 / 14, adjust=False).mean()

    # Interleaved, so that a burst of load from the other sessions on this machine hits all three alike.
    timings: dict[str, list[float]] = {"ours": [], "talib": [], "pandas": []}
    for _ in range(40):
        for name, fn in (
            ("ours", lambda: ta_indicators(data, timeframe_seconds=3600)),
            ("talib", with_talib),
            ("pandas", with_pandas),
        ):
            t = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - t)
    ours, ref, plain = (min(timings[k]) for k in ("ours", "talib", "pandas"))
    ratios = sorted(o / r for o, r in zip(timings["ours"], timings["talib"], strict=True))
    print(
        f"8 shared indicators (ATR, RSI, SMA20, SMA50, EMA20, STD20, STD50, volume mean): ours {ours * 1000:.1f} ms, "
        f"TA-Lib {ref * 1000:.1f} ms, plain pandas {plain * 1000:.1f} ms (best of 40) -> ours/TA-Lib "
        f"{ours / ref:.2f}x (target <= 3x); median of paired runs {ratios[len(ratios) // 2]:.2f}x"
    )


def bench_write(n: int = 1_000_000) -> None:
    import django

    django.setup()
    import pandas as pd
    from django.db import connection, transaction

    from enrichment.candles.models import CANDLE_COLUMNS
    from enrichment.candles.services.candle_upsert import candles_upsert, copy_into
    from etl.models import Market, Symbol

    data = candles(n, seed=2)
    frame = pd.DataFrame({k: v for k, v in data.items() if k != "ts"})
    frame.insert(0, "ts", pd.to_datetime(data["ts"], unit="s", utc=True))
    for col in CANDLE_COLUMNS:
        if col not in frame:
            frame[col] = np.nan

    class Rollback(Exception):
        pass

    try:
        with transaction.atomic():
            market = Market.objects.create(code="BENCH_FEATURES", name="bench", timezone="UTC", currency="USD")
            symbol = Symbol.objects.create(ticker="BENCH", market=market)
            with connection.cursor() as cur:
                cur.execute("CREATE TABLE bench_plain_copy (LIKE market_data_v2 INCLUDING ALL)")
                cur.execute(
                    f"ALTER TABLE bench_plain_copy ALTER symbol_id SET DEFAULT {symbol.pk}, "
                    "ALTER timeframe SET DEFAULT '1h', ALTER source SET DEFAULT 'bench', "
                    "ALTER quality_flags SET DEFAULT 0, ALTER revision SET DEFAULT 1"
                )
                cols = [c for c in CANDLE_COLUMNS if c != "trades"]
                t = time.perf_counter()
                copy_into(
                    cur,
                    table="bench_plain_copy",
                    columns=cols,
                    ts=frame["ts"],
                    arrays=[frame[c].to_numpy() for c in cols],
                )
                plain = time.perf_counter() - t
            t = time.perf_counter()
            first = candles_upsert(symbol=symbol, timeframe="1h", frame=frame, source="bench")
            upsert = time.perf_counter() - t
            t = time.perf_counter()
            again = candles_upsert(symbol=symbol, timeframe="1h", frame=frame, source="bench")
            rerun = time.perf_counter() - t
            assert first.inserted == n and again.unchanged == n and again.updated == 0
            raise Rollback
    except Rollback:
        pass
    print(
        f"write {n:,} rows: plain binary COPY {n / plain:,.0f} rows/s ({plain:.2f} s); "
        f"v2 upsert (COPY to staging + amendment check + INSERT ... ON CONFLICT) {n / upsert:,.0f} rows/s "
        f"({upsert:.2f} s) = {plain / upsert:.2f} of COPY's rate (target >= 0.33); "
        f"unchanged re-run {n / rerun:,.0f} rows/s, 0 rows written"
    )


if __name__ == "__main__":
    bench_features()
    if "--no-db" not in sys.argv:
        bench_write(int(os.environ.get("BENCH_WRITE_ROWS", "1000000")))
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
