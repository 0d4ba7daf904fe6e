"""Quality: expected bars from trading sessions, gaps, row flags and scores, daily completeness."""

from __future__ import annotations

from datetime import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from enrichment.candles.candle_quality import (
    QualityFlag,
    bars_per_day,
    daily_metrics,
    missing_before,
    row_quality,
    series_breaks,
)
from enrichment.candles.services.candle_upsert import candles_upsert
from enrichment.candles.services.feature_compute import features_compute
from enrichment.candles.tests.feature_fixtures import make_symbol
from enrichment.models import DataQualityMetric, MarketDataV2
from etl.calendars import ALWAYS_OPEN, expected_mask, weekly_calendar

NASDAQ = weekly_calendar(
    "America/New_York",
    [SimpleNamespace(start_weekday=d, start_time=time(9, 30), end_weekday=d, end_time=time(16)) for d in range(5)],
)


def utc(*stamps: str) -> np.ndarray:
    return pd.DatetimeIndex(pd.to_datetime(list(stamps), utc=True)).as_unit("s").asi8


def session_bars(day: str, minutes: int = 15) -> list[pd.Timestamp]:
    start = pd.Timestamp(f"{day} 09:30", tz="America/New_York")
    return [start + pd.Timedelta(minutes=minutes * i) for i in range(390 // minutes)]


def seconds(stamps) -> np.ndarray:
    return pd.DatetimeIndex(stamps).tz_convert("UTC").as_unit("s").asi8


@pytest.mark.parametrize("day", ["2024-01-16", "2024-07-16"])  # winter and summer time
def test_nasdaq_expects_26_quarter_hours_a_weekday_in_local_time(day):
    grid = pd.date_range(f"{day} 00:00", periods=96, freq="15min", tz="UTC")
    mask = expected_mask(seconds(grid), NASDAQ, 900)
    assert mask.sum() == 26
    assert list(grid[mask].tz_convert("America/New_York").strftime("%H:%M")[[0, -1]]) == ["09:30", "15:45"]


def test_weekends_expect_nothing_and_daily_bars_follow_weekdays():
    saturday = pd.date_range("2024-01-20", periods=96, freq="15min", tz="UTC")
    assert not expected_mask(seconds(saturday), NASDAQ, 900).any()
    week = utc(*[f"2024-01-{d:02d}" for d in range(15, 22)])  # Monday..Sunday
    assert expected_mask(week, NASDAQ, 86400).tolist() == [True] * 5 + [False] * 2
    assert expected_mask(week, ALWAYS_OPEN, 86400).all()


def test_missing_bars_are_counted_by_the_sessions_not_the_clock():
    bars = session_bars("2024-01-19") + session_bars("2024-01-22")  # Friday, Monday
    del bars[30]  # Monday 10:30 is missing
    missing = missing_before(seconds(bars), NASDAQ, 900)
    assert missing[26] == 0  # the weekend and the night are not gaps
    assert missing[30] == 1 and missing.sum() == 1
    assert bars_per_day(NASDAQ, 900) == 26 and bars_per_day(NASDAQ, 3600) == 7 and bars_per_day(ALWAYS_OPEN, 900) == 96


def test_a_holiday_is_a_gap_but_not_a_series_break_two_missing_days_are():
    one_day_off = session_bars("2024-01-16") + session_bars("2024-01-18")
    two_days_off = session_bars("2024-01-15") + session_bars("2024-01-18")
    assert missing_before(seconds(one_day_off), NASDAQ, 900)[26] == 26
    assert series_breaks(seconds(one_day_off), NASDAQ, 900).tolist() == [True] + [False] * 51
    assert series_breaks(seconds(two_days_off), NASDAQ, 900)[26]
    crypto = np.arange(10) * 900
    crypto[5:] += 900
    assert series_breaks(crypto, ALWAYS_OPEN, 900).tolist() == [True] + [False] * 4 + [True] + [False] * 4


def test_row_flags_and_score():
    o = np.array([10.0, 10, 10, 10, 10])
    h = np.array([11.0, 9, 11, 11, 11])  # row 1: high below open
    low = np.array([9.0, 9, 9, 9, 9])
    c = np.array([10.5, 10, 10, 10, 10])
    v = np.array([100.0, 100, 0, 5000, 100])
    spike = np.array([np.nan, 1, 0, 50, 1])
    flags, score = row_quality(
        open_=o,
        high=h,
        low=low,
        close=c,
        volume=v,
        volume_spike_score=spike,
        missing=np.array([0, 0, 0, 0, 3]),
        expected=np.array([True] * 4 + [False]),
    )
    assert QualityFlag.names(flags[0]) == [] and score[0] == 1.0
    assert QualityFlag.names(flags[1]) == ["ohlc_inconsistent"] and score[1] == 0.5
    assert QualityFlag.names(flags[2]) == ["volume_anomaly"]  # no volume while the market is open
    assert QualityFlag.names(flags[3]) == ["volume_anomaly"]  # fifty times the usual volume
    assert QualityFlag.names(flags[4]) == ["gap_before", "outside_session"] and score[4] == 0.5


def test_daily_completeness_is_measured_against_the_sessions():
    bars = session_bars("2024-01-19") + session_bars("2024-01-22")
    del bars[30]
    ts = seconds(bars)
    flags = np.where(missing_before(ts, NASDAQ, 900) > 0, int(QualityFlag.GAP_BEFORE), 0)
    metrics = daily_metrics(ts_seconds=ts, flags=flags, score=np.ones(len(ts)), calendar=NASDAQ, timeframe_seconds=900)
    by_day = metrics.set_index("day")
    assert list(by_day.index.astype(str)) == ["2024-01-19", "2024-01-20", "2024-01-21", "2024-01-22"]
    assert by_day.loc[pd.Timestamp("2024-01-19").date(), "completeness"] == 1.0
    monday = by_day.loc[pd.Timestamp("2024-01-22").date()]
    assert (monday.expected_bars, monday.actual_bars, monday.gaps) == (26, 25, 1)
    assert monday.completeness == pytest.approx(25 / 26)
    assert np.isnan(by_day.loc[pd.Timestamp("2024-01-20").date(), "completeness"])


@pytest.mark.django_db
def test_metrics_and_row_flags_are_stored_for_a_stock():
    aapl = make_symbol("AAPL", "NASDAQ", "STOCK_NASDAQ")
    bars = session_bars("2024-01-19") + session_bars("2024-01-22")
    del bars[30]
    n = len(bars)
    close = 100 + np.arange(n, dtype=float)
    frame = pd.DataFrame(
        {
            "ts": pd.DatetimeIndex(bars).tz_convert("UTC"),
            "open": close,
            "high": close + 1,
            "low": close - 1,
            "close": close,
            "volume": np.full(n, 1000.0),
        }
    )
    frame.loc[40, "high"] = frame.loc[40, "low"] - 1  # an inconsistent bar
    candles_upsert(symbol=aapl, timeframe="15m", frame=frame, source="market_data")
    features_compute(symbol=aapl, timeframe="15m")
    monday = DataQualityMetric.objects.get(symbol=aapl, timeframe="15m", day="2024-01-22")
    assert (monday.expected_bars, monday.actual_bars, monday.gaps, monday.ohlc_inconsistencies) == (26, 25, 1, 1)
    assert monday.completeness == pytest.approx(25 / 26)
    rows = list(MarketDataV2.objects.filter(symbol=aapl).order_by("ts"))
    assert rows[30].flag_names == ["gap_before"] and rows[30].quality_score == 0.75
    assert rows[40].flag_names == ["ohlc_inconsistent"] and rows[26].flag_names == []
    # A holiday-sized hole does not restart the features: SMA 20 is defined right after the weekend.
    assert rows[27].sma_20 is not None
