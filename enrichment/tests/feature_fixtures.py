"""Generated candle series for the feature, v2 and backfill tests (no files)."""

from __future__ import annotations

import numpy as np


def random_candles(n: int, *, seed: int = 7, timeframe_seconds: int = 900, start: int = 1_700_000_000, gaps: int = 0):
    """A random-walk OHLCV series with taker volume, open interest and 8-hourly funding;
    `gaps` random holes (1-5 missing bars each) when asked."""
    rng = np.random.default_rng(seed)
    steps = np.ones(n, dtype=np.int64)
    if gaps:
        holes = rng.choice(np.arange(1, n), size=gaps, replace=False)
        steps[holes] += rng.integers(1, 6, size=gaps)
    steps[0] = 0
    ts = start + np.cumsum(steps) * timeframe_seconds
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate([[close[0]], close[:-1]]) * (1 + rng.normal(0, 0.001, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
    volume = rng.uniform(10, 1000, n)
    funding = np.where((ts % 28800) == 0, rng.normal(1e-4, 1e-4, n), np.nan)
    return {
        "ts": ts,
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "taker_buy_volume": volume * rng.uniform(0.2, 0.8, n),
        "open_interest": 1e6 * np.exp(np.cumsum(rng.normal(0, 0.001, n))),
        "funding_rate": funding,
        "liquidations": volume * rng.uniform(0, 0.05, n),
    }
