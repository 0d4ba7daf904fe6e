"""The exchanges' real calendars: a BIST bayram and a NYSE Thanksgiving (with their early
closes) are neither gaps nor series breaks, completeness counts only the days the exchange
traded, and an operator's unscheduled closure does the same."""

from __future__ import annotations

from datetime import date, time

import numpy as np
import pandas as pd
import pytest

from enrichment.candles.candle_quality import QualityFlag, missing_before, series_breaks
from enrichment.candles.services.candle_upsert import candles_upsert
from enrichment.candles.services.feature_compute import features_compute
from enrichment.candles.tests.feature_fixtures import make_symbol
from enrichment.models import DataQualityMetric, MarketDataV2
from etl import calendars
from etl.models import Market, MarketClosure

QUARTER = 900


def quarter_hours(days: list[str], zone: str, opens: time, closes: dict[str, time], default_close: time):
    """15-minute bar open times (UTC) of each local trading day, from the open to its close."""
    stamps = []
    for day in days:
        start = pd.Timestamp(f"{day} {opens:%H:%M}", tz=zone)
        end = pd.Timestamp(f"{day} {closes.get(day, default_close):%H:%M}", tz=zone)
        stamps.extend(pd.date_range(start, end, freq="15min", inclusive="left"))
    return pd.DatetimeIndex(stamps).tz_convert("UTC")


def weekdays(first: str, last: str, closed: set[str]) -> list[str]:
    return [d.strftime("%Y-%m-%d") for d in pd.bdate_range(first, last) if d.strftime("%Y-%m-%d") not in closed]


def store_series(symbol, ts: pd.DatetimeIndex) -> list[MarketDataV2]:
    close = 100 + np.sin(np.arange(len(ts)) / 7.0) * 5 + np.arange(len(ts)) * 0.01
    frame = pd.DataFrame(
        {"ts": ts, "open": close, "high": close + 0.5, "low": close - 0.5, "close": close, "volume": 1000.0}
    )
    candles_upsert(symbol=symbol, timeframe="15m", frame=frame, source="market_data")
    features_compute(symbol=symbol, timeframe="15m")
    return list(MarketDataV2.objects.filter(symbol=symbol, timeframe="15m").order_by("ts"))


def assert_continuous_across(rows: list[MarketDataV2], first_after: pd.Timestamp) -> None:
    """No flag anywhere; SMA 50 right after the closure is the mean of the 50 closes before it."""
    assert [r.flag_names for r in rows if r.quality_flags] == []
    index = next(i for i, r in enumerate(rows) if pd.Timestamp(r.ts) >= first_after)
    assert index >= 50
    closes = [float(r.close) for r in rows[index - 49 : index + 1]]
    assert rows[index].sma_50 == pytest.approx(np.mean(closes))
    assert all(r.sma_50 is not None for r in rows[49:])


def assert_complete_on_trading_days(symbol, closed_days: list[str]) -> None:
    metrics = {str(m.day): m for m in DataQualityMetric.objects.filter(symbol=symbol, timeframe="15m")}
    traded = [m for m in metrics.values() if m.expected_bars]
    assert traded and all(m.completeness == 1.0 and m.gaps == 0 for m in traded)
    for day in closed_days:
        assert day not in metrics or metrics[day].expected_bars == 0


@pytest.mark.django_db
def test_a_bist_bayram_and_its_half_day_are_neither_gaps_nor_breaks():
    # Ramazan Bayrami 2024: the eve (9 April) closes at 12:30, 10-12 April are closed.
    bayram = ["2024-04-10", "2024-04-11", "2024-04-12"]
    days = weekdays("2024-03-25", "2024-04-19", set(bayram))
    ts = quarter_hours(days, "Europe/Istanbul", time(10), {"2024-04-09": time(12, 30)}, time(18))
    symbol = make_symbol("THYAO", "BIST", "STOCK_BIST")
    rows = store_series(symbol, ts)
    assert len(rows) == len(ts)
    assert_continuous_across(rows, pd.Timestamp("2024-04-15 07:00", tz="UTC"))
    assert_complete_on_trading_days(symbol, bayram)
    eve = DataQualityMetric.objects.get(symbol=symbol, timeframe="15m", day=date(2024, 4, 9))
    assert (eve.expected_bars, eve.actual_bars) == (10, 10)


@pytest.mark.django_db
def test_a_nyse_thanksgiving_and_its_early_close_are_neither_gaps_nor_breaks():
    days = weekdays("2024-11-11", "2024-12-06", {"2024-11-28"})
    ts = quarter_hours(days, "America/New_York", time(9, 30), {"2024-11-29": time(13)}, time(16))
    symbol = make_symbol("IBM", "NYSE", "STOCK_NYSE")
    rows = store_series(symbol, ts)
    assert_continuous_across(rows, pd.Timestamp("2024-11-29 14:30", tz="UTC"))
    assert_complete_on_trading_days(symbol, ["2024-11-28"])
    friday = DataQualityMetric.objects.get(symbol=symbol, timeframe="15m", day=date(2024, 11, 29))
    assert (friday.expected_bars, friday.completeness) == (14, 1.0)


@pytest.mark.django_db
def test_a_bar_after_an_early_close_is_outside_the_session():
    symbol = make_symbol("IBM", "NYSE", "STOCK_NYSE")
    calendar = calendars.market_calendar(symbol.market)
    after_close = pd.DatetimeIndex(["2024-11-29 13:15", "2024-11-27 13:15"], tz="America/New_York")
    assert calendars.expected_mask(after_close.tz_convert("UTC").as_unit("s").asi8, calendar, QUARTER).tolist() == [
        False,
        True,
    ]
    assert calendars.session_close(calendar, date(2024, 11, 29)) == pd.Timestamp("2024-11-29 18:00", tz="UTC")
    assert calendars.session_close(calendar, date(2024, 11, 28)) is None


@pytest.mark.django_db
def test_an_operator_closure_is_no_gap_and_an_early_close_override_is_honoured():
    market = make_symbol("IBM", "NYSE", "STOCK_NYSE").market
    days = weekdays("2024-01-08", "2024-01-12", set())
    ts = quarter_hours(days, "America/New_York", time(9, 30), {}, time(16))
    seconds = ts.as_unit("s").asi8
    without_wednesday = seconds[~ts.tz_convert("America/New_York").strftime("%Y-%m-%d").isin(["2024-01-10"])]
    calendar = calendars.market_calendar(market)
    assert missing_before(without_wednesday, calendar, QUARTER).sum() == 26
    MarketClosure.objects.create(market=market, day=date(2024, 1, 10), reason="systems outage")
    MarketClosure.objects.create(market=market, day=date(2024, 1, 11), close_at=time(12))
    calendar = calendars.market_calendar(Market.objects.get(pk=market.pk))
    assert missing_before(without_wednesday, calendar, QUARTER).sum() == 0
    thursday = pd.DatetimeIndex(["2024-01-11 11:45", "2024-01-11 12:00"], tz="America/New_York")
    assert calendars.expected_mask(thursday.as_unit("s").asi8, calendar, QUARTER).tolist() == [True, False]
    assert calendars.session_close(calendar, date(2024, 1, 11)) == pd.Timestamp("2024-01-11 17:00", tz="UTC")


def test_crypto_is_always_open_and_fx_trades_its_weekly_session():
    assert calendars.ALWAYS_OPEN.always_open
    sessions = [type("S", (), {"start_weekday": 6, "start_time": time(17), "end_weekday": 4, "end_time": time(17)})]
    fx = calendars.weekly_calendar("America/New_York", sessions)
    week = pd.DatetimeIndex([f"2024-01-{d:02d}" for d in range(14, 21)], tz="UTC").as_unit("s").asi8  # Sun..Sat
    assert calendars.expected_mask(week, fx, 86400).tolist() == [False] + [True] * 5 + [False]
    sunday_evening = pd.DatetimeIndex(["2024-01-14 16:45", "2024-01-14 17:00"], tz="America/New_York")
    assert calendars.expected_mask(sunday_evening.as_unit("s").asi8, fx, QUARTER).tolist() == [False, True]


def test_a_lunch_break_splits_the_day_into_two_sessions():
    calendar = calendars.exchange_calendar("XHKG", "Asia/Hong_Kong")
    bars = pd.DatetimeIndex(["2024-03-04 11:45", "2024-03-04 12:15", "2024-03-04 13:00"], tz="Asia/Hong_Kong")
    assert calendars.expected_mask(bars.as_unit("s").asi8, calendar, QUARTER).tolist() == [True, False, True]


def test_outside_exchange_calendars_range_the_weekly_sessions_decide():
    sessions = [
        type("S", (), {"start_weekday": d, "start_time": time(9, 30), "end_weekday": d, "end_time": time(16)})
        for d in range(5)
    ]
    intervals = calendars.weekly_calendar("America/New_York", sessions).intervals
    calendar = calendars.exchange_calendar("XNYS", "America/New_York", intervals=intervals)
    # 25 December 1995 (a Monday, long before the table starts): the weekly sessions know no holiday.
    old = pd.DatetimeIndex(["1995-12-25 10:00", "1995-12-23 10:00"], tz="America/New_York").as_unit("s").asi8
    assert calendars.expected_mask(old, calendar, QUARTER).tolist() == [True, False]
    breaks = series_breaks(np.array([0, QUARTER]), calendars.ALWAYS_OPEN, QUARTER)
    assert breaks.tolist() == [True, False] and QualityFlag.GAP_BEFORE == 1


@pytest.mark.django_db
def test_a_stock_market_runs_once_after_each_real_close_early_ones_included():
    from enrichment.candles.services.feature_runs import features_scheduled_run
    from enrichment.models import FeatureRun

    make_symbol("IBM", "NYSE", "STOCK_NYSE")

    def at(stamp: str):
        return features_scheduled_run(market="NYSE", now=pd.Timestamp(stamp, tz="UTC").to_pydatetime())

    # Black Friday 2024 closes at 13:00 New York (18:00 UTC): due from 18:30, not before.
    assert at("2024-11-29 18:00").result is not None  # for Wednesday's close, which had no run yet
    assert at("2024-11-29 18:29").skipped_because == "already ran after the close at 2024-11-27T21:00:00+00:00"
    assert at("2024-11-29 18:30").result is not None
    assert at("2024-11-29 21:30").skipped_because == "already ran after the close at 2024-11-29T18:00:00+00:00"
    closes = FeatureRun.objects.filter(requested_by="schedule").values_list("params__close", flat=True)
    assert sorted(closes) == ["2024-11-27T21:00:00+00:00", "2024-11-29T18:00:00+00:00"]
    # Thanksgiving has no close: the day after it, the last one is Wednesday's.
    assert at("2024-11-28 23:00").skipped_because == "already ran after the close at 2024-11-27T21:00:00+00:00"
