"""`compute_many` (many series over their concatenated rows, one pass of the kernels) gives
each series the bits `compute_features` + `row_quality` give it on its own."""

from __future__ import annotations

from datetime import time
from types import SimpleNamespace

import numpy as np
import pytest

from enrichment.candles import candle_quality
from enrichment.candles.feature_kernels import compute_features
from enrichment.candles.feature_list import INPUT_COLUMNS, RECURSIVE
from enrichment.candles.services.feature_compute import ManyRows, SeriesKey, compute_many, compute_rows, context_rows
from etl.calendars import ALWAYS_OPEN, expected_mask, weekly_calendar

NASDAQ = weekly_calendar(
    "America/New_York",
    [SimpleNamespace(start_weekday=d, start_time=time(9, 30), end_weekday=d, end_time=time(16)) for d in range(5)],
)
CRYPTO_1H = SeriesKey(None, "1h", 3600, ALWAYS_OPEN)
NASDAQ_1D = SeriesKey(None, "1d", 86400, NASDAQ)
NASDAQ_15M = SeriesKey(None, "15m", 900, NASDAQ)
T0 = 1_704_067_200  # 2024-01-01 00:00 UTC


def _series(rng, key: SeriesKey, n: int) -> dict:
    """n rows of one series: gaps (short and long), a misaligned bar, NaN inputs, funding on
    some, a random first stale row, stored state, row offset and row before the context."""
    tf = key.seconds
    if key is NASDAQ_15M:  # the session's quarter hours, weekdays (a long gap every night)
        days = np.arange(60) * 86400 + T0 + 14 * 3600 + 30 * 60
        slots = (days[:, None] + np.arange(26) * tf).ravel()
        slots = slots[expected_mask(slots, NASDAQ, tf)]
        start = int(rng.integers(0, 200))
        ts = slots[start : start + n + n // 5]
    else:
        ts = T0 + np.arange(n + n // 5, dtype=np.int64) * tf
    keep = np.sort(rng.choice(len(ts), size=min(n, len(ts)), replace=False))
    ts = ts[keep].copy()
    if len(ts) > 10 and rng.random() < 0.5:
        ts[len(ts) // 2 :] += 37  # misaligned from here on
    n = len(ts)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    data = {c: np.full(n, np.nan) for c in (*INPUT_COLUMNS, *RECURSIVE)}
    data.update(
        open=close * (1 + rng.normal(0, 0.005, n)),
        high=close * 1.01,
        low=close * 0.99,
        close=close,
        volume=rng.uniform(0, 1e6, n),
    )
    if key is CRYPTO_1H:
        data["taker_buy_volume"] = data["volume"] * rng.uniform(0, 1, n)
        data["open_interest"] = rng.uniform(1e6, 2e6, n)
        data["liquidations"] = rng.uniform(0, 1e4, n)
        data["long_short_account_ratio"] = rng.uniform(0.5, 2, n)
        if rng.random() < 0.7:
            every = int(rng.choice([1, 2, 8]))
            data["funding_rate"][::every] = rng.normal(0, 1e-4, len(data["funding_rate"][::every]))
    for c in ("close", "volume", "high", "open_interest"):
        data[c][rng.random(n) < 0.03] = np.nan
    data["volume"][rng.random(n) < 0.03] = 0.0
    for c in RECURSIVE:
        data[c] = np.where(rng.random(n) < 0.2, np.nan, rng.uniform(1, 100, n))
    emit_from = int(rng.choice([0, int(rng.integers(0, n + 1)), n - 1 if n else 0]))
    prev = None
    if rng.random() < 0.6 and n:
        prev = int(ts[0] - tf * int(rng.choice([1, 1, 2, 30])))
    return {
        "ts": ts,
        "data": data,
        "emit_from": emit_from,
        "row_offset": int(rng.integers(0, 1000)) if prev is not None else 0,
        "prev": prev,
    }


def _alone(key: SeriesKey, s: dict) -> dict[str, np.ndarray]:
    """The per-series computation, from its parts."""
    ts, data, emit_from = s["ts"], s["data"], s["emit_from"]
    with_prev = ts if s["prev"] is None else np.concatenate([[s["prev"]], ts])
    skip = 0 if s["prev"] is None else 1
    missing = candle_quality.missing_before(with_prev, key.calendar, key.seconds)[skip:]
    breaks = candle_quality.series_breaks(with_prev, key.calendar, key.seconds)[skip:]
    out = compute_features(
        {c: data[c] for c in INPUT_COLUMNS},
        timeframe_seconds=key.seconds,
        bars_per_day=candle_quality.bars_per_day(key.calendar, key.seconds),
        breaks=breaks,
        emit_from=emit_from,
        state={c: data[c][emit_from - 1] if emit_from else np.nan for c in RECURSIVE},
        row_offset=s["row_offset"],
    )
    tail = slice(emit_from, None)
    flags, score = candle_quality.row_quality(
        open_=data["open"][tail],
        high=data["high"][tail],
        low=data["low"][tail],
        close=data["close"][tail],
        volume=data["volume"][tail],
        volume_spike_score=out["volume_spike_score"],
        missing=missing[tail],
        expected=expected_mask(ts[tail], key.calendar, key.seconds),
    )
    out["quality_score"], out["quality_flags"] = score, flags.astype(np.float64)
    return out


def _together(keys: list[SeriesKey], series: list[dict]) -> tuple[dict[str, np.ndarray], ManyRows]:
    lengths = [len(s["ts"]) for s in series]
    rows = ManyRows.build(
        ts_seconds=np.concatenate([s["ts"] for s in series]),
        data={c: np.concatenate([s["data"][c] for s in series]) for c in (*INPUT_COLUMNS, *RECURSIVE)},
        bounds=np.concatenate([[0], np.cumsum(lengths)]),
        dirty_seconds=[s["ts"][s["emit_from"]] if s["emit_from"] < len(s["ts"]) else 2**62 for s in series],
        row_offset=[s["row_offset"] for s in series],
        prev_seconds=[candle_quality.NO_PREV if s["prev"] is None else s["prev"] for s in series],
    )
    return compute_many(keys, rows), rows


@pytest.mark.parametrize("seed", range(6))
def test_many_series_in_one_call_equal_each_alone_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    lengths = [1, 3, 30, 45, 60, 130, 250, 400, 70, 12]
    groups = [CRYPTO_1H, NASDAQ_1D, NASDAQ_15M]
    keys = [groups[int(rng.integers(0, len(groups)))] for _ in lengths]
    series = [_series(rng, key, n) for key, n in zip(keys, lengths, strict=True)]
    together, rows = _together(keys, series)
    assert rows.emit_from.tolist() == [s["emit_from"] for s in series]

    expected = [_alone(key, s) for key, s in zip(keys, series, strict=True)]
    assert set(together) == set(expected[0])
    for c in together:
        np.testing.assert_array_equal(together[c], np.concatenate([e[c] for e in expected]), err_msg=c)


def test_windows_and_recursions_do_not_cross_series_or_lose_their_values():
    """Guards for the comparison above: a series of the chunk continues a stretch (no break on
    its first row), one has funding percentiles, and the checks would see a wrong neighbour."""
    rng = np.random.default_rng(11)
    a, b = _series(rng, CRYPTO_1H, 300), _series(rng, CRYPTO_1H, 300)
    a["ts"] = T0 + 3600 * np.arange(300)
    a["prev"], a["emit_from"], a["row_offset"] = None, 0, 0
    a["data"]["funding_rate"][:] = rng.normal(0, 1e-4, 300)
    b["ts"] = a["ts"][-1] + 3600 * np.arange(1, 301)
    for s in (a, b):  # no gaps, no NaN: every window fills
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 300)))
        s["data"].update(open=close, high=close * 1.01, low=close * 0.99, close=close, volume=rng.uniform(1, 9, 300))
    b["prev"], b["emit_from"], b["row_offset"] = int(a["ts"][-1]), 100, 300
    together, _ = _together([CRYPTO_1H, CRYPTO_1H], [a, b])
    alone_b = _alone(CRYPTO_1H, b)
    assert np.isfinite(together["funding_rate_percentile"][:300]).sum() > 100
    assert np.isfinite(alone_b["sma_50"]).all() and np.isfinite(alone_b["atr_14"][-50:]).all()
    for c in together:
        np.testing.assert_array_equal(together[c][300:], alone_b[c], err_msg=c)


def test_compute_rows_is_compute_many_of_one_series():
    rng = np.random.default_rng(5)
    s = _series(rng, NASDAQ_1D, 200)
    rows = context_rows(
        NASDAQ_1D,
        ts_seconds=s["ts"],
        data=s["data"],
        dirty_seconds=int(s["ts"][s["emit_from"]]) if s["emit_from"] < len(s["ts"]) else 2**62,
        row_offset=s["row_offset"],
        prev_seconds=s["prev"],
    )
    out, expected = compute_rows(NASDAQ_1D, rows), _alone(NASDAQ_1D, s)
    for c in expected:
        np.testing.assert_array_equal(out[c], expected[c], err_msg=c)
