"""Incremental computation equals a full recompute, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from enrichment.candles.feature_kernels import compute_features, context_start, default_breaks
from enrichment.candles.feature_list import RECURSIVE
from enrichment.candles.tests.feature_fixtures import random_candles


def incremental(data, emit_from, full, *, timeframe_seconds=900, bars_per_day=None):
    start = context_start(
        data["funding_rate"], emit_from, timeframe_seconds=timeframe_seconds, bars_per_day=bars_per_day
    )
    # Row `start` continues the stretch unless it is a real break.
    breaks = default_breaks(data["ts"], timeframe_seconds)[start:]
    context = {k: v[start:] for k, v in data.items()}
    state = {name: float(full[name][emit_from - 1]) for name in RECURSIVE}
    return compute_features(
        context,
        timeframe_seconds=timeframe_seconds,
        bars_per_day=bars_per_day,
        breaks=breaks,
        emit_from=emit_from - start,
        state=state,
        row_offset=start,
    ), start


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_incremental_tail_is_bit_identical_to_full_recompute_on_series_with_gaps(seed):
    data = random_candles(4000, seed=seed, gaps=25)
    full = compute_features(data, timeframe_seconds=900)
    rng = np.random.default_rng(seed)
    for emit_from in sorted(rng.integers(200, 3990, size=8)):
        tail, start = incremental(data, int(emit_from), full)
        assert start > 0
        for name, values in tail.items():
            np.testing.assert_array_equal(values, full[name][emit_from:], err_msg=f"{name} from {emit_from}")


# A start on an 8-hour boundary, so that funding lands on every 32nd 15m bar (the
# fixture's default start is not on one: its series carry no funding at all).
FUNDING_ALIGNED_START = 59_027 * 28_800


def test_incremental_reads_only_the_tail_it_needs():
    data = random_candles(5000, seed=9, start=FUNDING_ALIGNED_START)
    assert np.flatnonzero(~np.isnan(data["funding_rate"]))[:3].tolist() == [0, 32, 64]
    start = context_start(data["funding_rate"], 4900, timeframe_seconds=900, bars_per_day=None)
    # The 89 funding observations before row 4900 (the last at 4896, 32 bars apart) decide it:
    # the percentile window is 90 observations, the row's own included.
    assert start == 4896 - 88 * 32
    full = compute_features(data, timeframe_seconds=900)
    tail, _ = incremental(data, 4900, full)
    np.testing.assert_array_equal(tail["funding_rate_percentile"], full["funding_rate_percentile"][4900:])
    assert not np.isnan(full["funding_rate_percentile"][4896])


def test_state_is_what_continues_the_recursion():
    data = random_candles(1000, seed=5)
    full = compute_features(data, timeframe_seconds=900)
    tail, _ = incremental(data, 700, full)
    wrong = {k: v[600:] for k, v in data.items()}
    broken = default_breaks(wrong["ts"], 900)
    broken[0] = False
    off = compute_features(
        wrong,
        timeframe_seconds=900,
        breaks=broken,
        emit_from=100,
        state={"atr_14": 1.0, "ema_20": 1.0, "rsi_avg_gain": 1.0, "rsi_avg_loss": 1.0},
    )
    assert off["atr_14"][0] != tail["atr_14"][0]
