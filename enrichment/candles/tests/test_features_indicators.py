"""Indicators against published worksheets and TA-Lib; time horizons; nulls; gaps."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from enrichment.candles.feature_kernels import compute_features, default_breaks
from enrichment.candles.feature_list import FEATURES
from enrichment.candles.tests.feature_fixtures import random_candles

# StockCharts "ATR" worksheet (cs-atr): High, Low, Close and the published ATR(14).
STOCKCHARTS_HLC = [
    (48.70, 47.79, 48.16),
    (48.72, 48.14, 48.61),
    (48.90, 48.39, 48.75),
    (48.87, 48.37, 48.63),
    (48.82, 48.24, 48.74),
    (49.05, 48.635, 49.03),
    (49.20, 48.94, 49.07),
    (49.35, 48.86, 49.32),
    (49.92, 49.50, 49.91),
    (50.19, 49.87, 50.13),
    (50.12, 49.20, 49.53),
    (49.66, 48.90, 49.50),
    (49.88, 49.43, 49.75),
    (50.19, 49.725, 50.03),
    (50.36, 49.26, 50.31),
    (50.57, 50.09, 50.52),
    (50.65, 50.30, 50.41),
    (50.43, 49.21, 49.34),
    (49.63, 48.98, 49.37),
    (50.33, 49.61, 50.23),
    (50.29, 49.20, 49.2375),
    (50.17, 49.43, 49.93),
    (49.32, 48.08, 48.43),
    (48.50, 47.64, 48.18),
    (48.3201, 41.55, 46.57),
    (46.80, 44.2833, 45.41),
    (47.80, 47.31, 47.77),
    (48.39, 47.20, 47.72),
    (48.66, 47.90, 48.62),
    (48.79, 47.7301, 47.85),
]
STOCKCHARTS_ATR = [  # from the 14th row on; the worksheet rounds to 10 significant digits
    0.555,
    0.5939285714,
    0.5857908163,
    0.5689486152,
    0.6154522855,
    0.6179199794,
    0.6423542666,
    0.6743289618,
    0.6927697503,
    0.7754290538,
    0.7814698357,
    1.209229133,
    1.302619909,
    1.380289916,
    1.366697779,
    1.336219366,
    1.316482269,
]
# StockCharts "Bollinger Bands" worksheet (cs-bbands): closes and the published 20-day std (ddof=0).
BBANDS_CLOSE = [
    86.1557,
    89.0867,
    88.7829,
    90.3228,
    89.0671,
    91.1453,
    89.4397,
    89.1750,
    86.9302,
    87.6752,
    86.9596,
    89.4299,
    89.3221,
    88.7241,
    87.4497,
    87.2634,
    89.4985,
    87.9006,
    89.1260,
    90.7043,
    92.9001,
    92.9784,
    91.8021,
    92.6647,
    92.6843,
    92.3021,
    92.7725,
    92.5373,
    92.9490,
    93.2039,
    91.0669,
]
BBANDS_STD = [
    1.291961,
    1.452054,
    1.686425,
    1.771747,
    1.902075,
    2.019895,
    2.076546,
    2.176557,
    2.241921,
    2.202359,
    2.192185,
    2.021805,
]


def daily(h, l, c):  # noqa: E741
    n = len(c)
    return {
        "ts": np.arange(n) * 86400,
        "open": np.asarray(c),
        "high": np.asarray(h),
        "low": np.asarray(l),
        "close": np.asarray(c),
        "volume": np.ones(n),
    }


def test_atr_matches_the_stockcharts_worksheet_with_wilder_smoothing():
    h, l, c = (np.array(col) for col in zip(*STOCKCHARTS_HLC, strict=True))  # noqa: E741
    atr = compute_features(daily(h, l, c), timeframe_seconds=86400)["atr_14"]
    assert np.isnan(atr[:13]).all()
    np.testing.assert_allclose(atr[13:], STOCKCHARTS_ATR, rtol=5e-9)
    # The old bug: a simple 14-bar average of TR drifts away from the worksheet.
    tr = np.maximum(h - l, np.maximum(abs(h - np.r_[np.nan, c[:-1]]), abs(l - np.r_[np.nan, c[:-1]])))
    tr[0] = h[0] - l[0]
    assert abs(np.mean(tr[-14:]) - STOCKCHARTS_ATR[-1]) > 1e-3


def test_bollinger_std_is_the_population_one_of_the_worksheet():
    c = np.array(BBANDS_CLOSE)
    f = compute_features(daily(c, c, c), timeframe_seconds=86400)
    std = (f["bb_upper_20"] - f["sma_20"]) / 2
    assert np.isnan(std[:19]).all()
    np.testing.assert_allclose(std[19:], BBANDS_STD, atol=5e-7)


@pytest.fixture(scope="module")
def series():
    return random_candles(3000, seed=11)


def relerr(ours, ref, start):
    ours, ref = ours[start:], ref[start:]
    assert not np.isnan(ours).any() and not np.isnan(ref).any()
    return np.max(np.abs(ours / ref - 1.0))


def test_atr_equals_talib_with_a_neutral_first_bar_and_converges_without(series):
    f = compute_features(series, timeframe_seconds=900)
    h, l, c = series["high"], series["low"], series["close"]  # noqa: E741
    # TA-Lib drops the first bar's TR; a prepended bar whose close lies inside bar 0's range
    # makes its first TR equal ours (high - low), so the two must agree from the first value.
    ref = talib.ATR(np.r_[h[0], h], np.r_[l[0], l], np.r_[c[0], c], 14)[1:]
    assert relerr(f["atr_14"], ref, 13) < 1e-9
    # On the raw series the seeds differ, and the difference decays to nothing past warm-up.
    assert relerr(f["atr_14"], talib.ATR(h, l, c, 14), 400) < 1e-9


def test_rsi_sma_ema_std_and_volume_mean_equal_talib(series):
    f = compute_features(series, timeframe_seconds=900)
    c, v = series["close"], series["volume"]
    assert relerr(f["rsi_14"], talib.RSI(c, 14), 14) < 1e-9
    assert relerr(f["sma_20"], talib.SMA(c, 20), 19) < 1e-9
    assert relerr(f["sma_50"], talib.SMA(c, 50), 49) < 1e-9
    assert relerr(f["ema_20"], talib.EMA(c, 20), 19) < 1e-9
    assert relerr(f["rolling_volume_20"], talib.SMA(v, 20), 19) < 1e-9
    lr = np.r_[np.nan, np.log(c[1:] / c[:-1])]
    assert relerr(f["volatility_20"], talib.STDDEV(lr, 20, 1), 20) < 1e-9
    assert relerr(f["volatility_50"], talib.STDDEV(lr, 50, 1), 50) < 1e-9
    assert relerr(f["bb_upper_20"] - f["sma_20"], 2 * talib.STDDEV(c, 20, 1), 19) < 1e-9


def test_every_feature_has_a_value_once_past_warm_up(series):
    f = compute_features(series, timeframe_seconds=900)
    assert len(FEATURES) >= 22
    inputs_missing = {"long_short_ratio", "exchange_inflow"}  # no input in this series
    for name in FEATURES:
        tail = f[name][-100:]
        if name in inputs_missing:
            assert np.isnan(tail).all(), name
        elif name == "funding_rate_percentile":
            assert not np.isnan(tail[~np.isnan(series["funding_rate"][-100:])]).any()
        else:
            assert not np.isnan(tail).any(), name


def test_warm_up_rows_are_null_never_short_windows(series):
    f = compute_features(series, timeframe_seconds=900)
    first_value = {name: int(np.flatnonzero(~np.isnan(f[name]))[0]) for name in f if not np.isnan(f[name]).all()}
    assert first_value["sma_20"] == 19 and first_value["sma_50"] == 49
    assert first_value["volatility_20"] == 20 and first_value["volatility_50"] == 50
    assert first_value["atr_14"] == 13 and first_value["rsi_14"] == 14 and first_value["ema_20"] == 19
    assert first_value["market_structure"] == 39 and first_value["volume_spike_score"] == 20
    assert first_value["return_1h"] == 4 and first_value["return_1d"] == 96


def test_return_horizons_are_time_not_bars():
    c = 100 + np.arange(200.0)
    data = {"ts": np.arange(200) * 900, "open": c, "high": c, "low": c, "close": c, "volume": np.ones(200)}
    f = compute_features(data, timeframe_seconds=900)
    assert f["return_1h"][10] == pytest.approx(c[10] / c[6] - 1)  # 4 bars of 15 minutes
    assert f["return_1d"][150] == pytest.approx(c[150] / c[54] - 1)  # 96 bars
    hourly = compute_features({**data, "ts": np.arange(200) * 3600}, timeframe_seconds=3600)
    assert hourly["return_1h"][10] == pytest.approx(c[10] / c[9] - 1)
    assert hourly["return_1d"][30] == pytest.approx(c[30] / c[6] - 1)
    # A stock's trading day of 1h bars is its session (7 bars for 09:30-16:00), not 24 hours.
    stock = compute_features({**data, "ts": np.arange(200) * 3600}, timeframe_seconds=3600, bars_per_day=7)
    assert stock["return_1d"][30] == pytest.approx(c[30] / c[23] - 1)
    days = compute_features({**data, "ts": np.arange(200) * 86400}, timeframe_seconds=86400)
    assert np.isnan(days["return_1h"]).all()  # undefined on daily bars
    assert days["return_1d"][5] == pytest.approx(c[5] / c[4] - 1)  # previous close, not this bar's open
    four_hourly = compute_features({**data, "ts": np.arange(200) * 14400}, timeframe_seconds=14400)
    assert np.isnan(four_hourly["return_1h"]).all() and four_hourly["return_1d"][6] == pytest.approx(c[6] / c[0] - 1)


def test_volatility_is_per_bar_not_annualised(series):
    f = compute_features(series, timeframe_seconds=900)
    lr = np.log(series["close"][1:] / series["close"][:-1])
    assert f["volatility_20"][500] == pytest.approx(np.std(lr[480:500]), rel=1e-9)
    assert f["volatility_20"][500] < 0.05  # the random walk's step is 1 %


def test_windows_do_not_reach_across_a_gap():
    data = random_candles(300, seed=3)
    data["ts"] = data["ts"].copy()
    data["ts"][150:] += 5 * 900  # five missing bars before row 150
    f = compute_features(data, timeframe_seconds=900)
    assert default_breaks(data["ts"], 900)[150]
    assert np.isnan(f["sma_20"][150:169]).all() and not np.isnan(f["sma_20"][169])
    assert np.isnan(f["atr_14"][150:163]).all() and not np.isnan(f["atr_14"][163])
    assert np.isnan(f["return_1h"][150:154]).all() and not np.isnan(f["return_1h"][154])
    # After the gap ATR restarts from its own seed: equal to a series that starts there.
    alone = compute_features({k: v[150:] for k, v in data.items()}, timeframe_seconds=900)
    np.testing.assert_array_equal(f["atr_14"][150:], alone["atr_14"])


def test_crypto_features_come_from_each_rows_own_inputs():
    n = 30
    ones = np.ones(n)
    data = {
        "ts": np.arange(n) * 3600,
        "open": ones,
        "high": ones * 1.1,
        "low": ones * 0.9,
        "close": ones,
        "volume": ones * 100,
        "taker_buy_volume": ones * 60,
        "liquidations": ones * 5,
        "open_interest": np.linspace(1000, 1290, n),
        "long_short_account_ratio": ones * 1.5,
    }
    f = compute_features(data, timeframe_seconds=3600)
    assert f["delta"][0] == 20 and f["buy_sell_ratio"][0] == 1.5
    assert f["liquidation_intensity"][0] == 0.05 and f["long_short_ratio"][0] == 1.5
    assert np.isnan(f["open_interest_change"][0]) and f["open_interest_change"][1] == pytest.approx(0.01)
    assert np.isnan(f["exchange_inflow"]).all()
    spot = compute_features({k: v for k, v in data.items() if k != "taker_buy_volume"}, timeframe_seconds=3600)
    assert np.isnan(spot["delta"]).all() and np.isnan(spot["buy_sell_ratio"]).all()


def test_trend_structure_and_funding_percentile():
    n = 200
    c = 100 + np.arange(n, dtype=float)
    data = {
        "ts": np.arange(n) * 28800,
        "open": c,
        "high": c + 1,
        "low": c - 1,
        "close": c,
        "volume": np.ones(n),
        "funding_rate": np.r_[np.zeros(n - 1), 1.0],
    }
    f = compute_features(data, timeframe_seconds=28800)
    assert f["trend_direction"][100] == 1 and f["market_structure"][100] == 1
    down = compute_features(
        {**data, "close": c[::-1], "high": c[::-1] + 1, "low": c[::-1] - 1}, timeframe_seconds=28800
    )
    assert down["trend_direction"][100] == -1 and down["market_structure"][100] == -1
    assert np.isnan(f["funding_rate_percentile"][:89]).all()
    assert f["funding_rate_percentile"][89] == 100.0 and f["funding_rate_percentile"][-1] == 100.0


def test_the_benchmarked_subset_is_the_same_code_as_the_full_computation(series):
    from enrichment.candles.feature_kernels import ta_indicators

    full = compute_features(series, timeframe_seconds=900)
    for name, values in ta_indicators(series, timeframe_seconds=900).items():
        np.testing.assert_array_equal(values, full[name], err_msg=name)
