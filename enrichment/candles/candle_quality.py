"""Data quality of a candle series: which bars a market's sessions say should exist,
gaps, per-row flags and score, per-day completeness. Pure numpy/pandas, no ORM.

A market calendar is the weekly open intervals of its trading sessions in local
time (`etl.models.TradingSession`); the service builds one with `calendar_from_sessions`.
Holidays are not modelled, so a holiday counts as missing bars (flagged, and
visible in completeness) but not as a series break for the features.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import pandas as pd


class QualityFlag(enum.IntFlag):
    """Bits of market_data_v2.quality_flags."""

    GAP_BEFORE = 1
    VOLUME_ANOMALY = 2
    OHLC_INCONSISTENT = 4
    OUTSIDE_SESSION = 8

    @classmethod
    def names(cls, bits: int | None) -> list[str]:
        return [flag.name.lower() for flag in cls if bits and bits & flag.value]


WEEK_MINUTES = 7 * 1440
DAY = 86400
VOLUME_SPIKE_LIMIT = 10.0  # volume ten times the previous 20 bars' mean
PENALTY = {
    QualityFlag.GAP_BEFORE: 0.25,
    QualityFlag.VOLUME_ANOMALY: 0.25,
    QualityFlag.OHLC_INCONSISTENT: 0.5,
    QualityFlag.OUTSIDE_SESSION: 0.25,
}


@dataclass(frozen=True, slots=True)
class MarketCalendar:
    timezone: str
    # (start, end) minute of the week (Monday 00:00 = 0) in local time; start == end: always open.
    intervals: tuple[tuple[int, int], ...]

    @property
    def always_open(self) -> bool:
        return not self.intervals or any(start == end for start, end in self.intervals)

    def open_at(self, minute_of_week: np.ndarray) -> np.ndarray:
        if self.always_open:
            return np.ones(len(minute_of_week), dtype=bool)
        result = np.zeros(len(minute_of_week), dtype=bool)
        for start, end in self.intervals:
            if start < end:
                result |= (minute_of_week >= start) & (minute_of_week < end)
            else:
                result |= (minute_of_week >= start) | (minute_of_week < end)
        return result

    def trading_day_seconds(self) -> int:
        """Length of the longest single session (a trading day), 24 h when always open."""
        if self.always_open:
            return DAY
        return max((end - start) % WEEK_MINUTES for start, end in self.intervals) * 60


ALWAYS_OPEN = MarketCalendar(timezone="UTC", intervals=())


def calendar_from_sessions(timezone: str, sessions) -> MarketCalendar:
    """From objects with start_weekday/start_time/end_weekday/end_time (TradingSession rows)."""
    intervals = []
    for s in sessions:
        start = s.start_weekday * 1440 + s.start_time.hour * 60 + s.start_time.minute
        end = s.end_weekday * 1440 + s.end_time.hour * 60 + s.end_time.minute
        intervals.append((start, end))
    return MarketCalendar(timezone=timezone, intervals=tuple(intervals))


def bars_per_day(calendar: MarketCalendar, timeframe_seconds: int) -> int | None:
    """Bars in one trading day (1 on daily bars, None above)."""
    if timeframe_seconds > DAY:
        return None
    if timeframe_seconds == DAY:
        return 1
    return -(-calendar.trading_day_seconds() // timeframe_seconds)


def expected_mask(ts_seconds: np.ndarray, calendar: MarketCalendar, timeframe_seconds: int) -> np.ndarray:
    """Is a bar opening at each ts expected by the sessions? Intraday: the market is open at
    some point of the bar (its start, middle or last minute); daily and longer: the bar's
    UTC date is a weekday on which a session starts."""
    ts_seconds = np.asarray(ts_seconds, dtype=np.int64)
    if calendar.always_open or len(ts_seconds) == 0:
        return np.ones(len(ts_seconds), dtype=bool)
    if timeframe_seconds >= DAY:
        weekday = ((ts_seconds // DAY) + 3) % 7  # 1970-01-01 was a Thursday
        starting_days = np.array(sorted({start // 1440 for start, _ in calendar.intervals}))
        return np.isin(weekday, starting_days)
    result = np.zeros(len(ts_seconds), dtype=bool)
    for offset in sorted({0, timeframe_seconds // 2, max(0, timeframe_seconds - 60)}):
        result |= calendar.open_at(_minute_of_week(ts_seconds + offset, calendar.timezone))
    return result


def _minute_of_week(ts_seconds: np.ndarray, timezone: str) -> np.ndarray:
    local = pd.DatetimeIndex(pd.to_datetime(ts_seconds, unit="s", utc=True)).tz_convert(timezone)
    return np.asarray(local.day_of_week * 1440 + local.hour * 60 + local.minute, dtype=np.int64)


def _grid(ts_seconds: np.ndarray, timeframe_seconds: int) -> np.ndarray:
    first, last = int(ts_seconds[0]), int(ts_seconds[-1])
    return np.arange(first, last + 1, timeframe_seconds, dtype=np.int64)


def missing_before(ts_seconds: np.ndarray, calendar: MarketCalendar, timeframe_seconds: int) -> np.ndarray:
    """Expected bars missing between each row and the one before it (0 for the first)."""
    ts_seconds = np.asarray(ts_seconds, dtype=np.int64)
    n = len(ts_seconds)
    out = np.zeros(n, dtype=np.int64)
    if n < 2:
        return out
    grid = _grid(ts_seconds, timeframe_seconds)
    expected_cum = np.concatenate([[0], np.cumsum(expected_mask(grid, calendar, timeframe_seconds))])
    # Grid slots strictly between two rows: (prev, cur) -> indices prev+1 .. cur-1.
    slot = (ts_seconds - ts_seconds[0]) // timeframe_seconds
    between = expected_cum[slot[1:]] - expected_cum[slot[:-1] + 1]
    out[1:] = np.maximum(between, 0)
    return out


def series_breaks(ts_seconds: np.ndarray, calendar: MarketCalendar, timeframe_seconds: int) -> np.ndarray:
    """Breaks for the features: the first row, and rows after more missing bars than one
    trading day (0 on a market that is always open)."""
    ts_seconds = np.asarray(ts_seconds, dtype=np.int64)
    missing = missing_before(ts_seconds, calendar, timeframe_seconds)
    tolerance = 0 if calendar.always_open else (bars_per_day(calendar, timeframe_seconds) or 0)
    breaks = missing > tolerance
    if len(breaks):
        breaks[0] = True
    # Misaligned rows (a step that is not a whole number of bars) also break the series.
    if len(ts_seconds) > 1:
        breaks[1:] |= (np.diff(ts_seconds) % timeframe_seconds) != 0
    return breaks


def row_quality(
    *,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    volume_spike_score: np.ndarray,
    missing: np.ndarray,
    expected: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(flags, score) per row. Score = 1 minus the penalties of the row's flags, at least 0."""
    with np.errstate(invalid="ignore"):
        bad_ohlc = (
            ~np.isfinite(open_ + high + low + close)
            | (low <= 0)
            | (high < np.maximum(open_, close))
            | (low > np.minimum(open_, close))
            | (high < low)
        )
        bad_volume = ~np.isfinite(volume) | (volume < 0) | (volume_spike_score >= VOLUME_SPIKE_LIMIT)
        bad_volume |= (volume == 0) & expected
    flags = (
        np.where(missing > 0, int(QualityFlag.GAP_BEFORE), 0)
        | np.where(bad_volume, int(QualityFlag.VOLUME_ANOMALY), 0)
        | np.where(bad_ohlc, int(QualityFlag.OHLC_INCONSISTENT), 0)
        | np.where(~expected, int(QualityFlag.OUTSIDE_SESSION), 0)
    ).astype(np.int64)
    score = np.ones(len(flags))
    for flag, penalty in PENALTY.items():
        score -= np.where(flags & int(flag), penalty, 0.0)
    return flags, np.maximum(score, 0.0)


# data_quality_metrics' columns, in the order daily_metrics returns them.
DAILY_COLUMNS = (
    "day",
    "expected_bars",
    "actual_bars",
    "completeness",
    "gaps",
    "volume_anomalies",
    "ohlc_inconsistencies",
    "outside_session",
    "avg_quality_score",
)
COUNTED_FLAGS = {
    "gaps": QualityFlag.GAP_BEFORE,
    "volume_anomalies": QualityFlag.VOLUME_ANOMALY,
    "ohlc_inconsistencies": QualityFlag.OHLC_INCONSISTENT,
    "outside_session": QualityFlag.OUTSIDE_SESSION,
}


def _local_days(values: np.ndarray, zone: str) -> np.ndarray:
    idx = pd.DatetimeIndex(pd.to_datetime(values, unit="s", utc=True)).tz_convert(zone)
    return np.asarray(idx.date)


def _expected_per_day(
    ts_seconds: np.ndarray, calendar: MarketCalendar, timeframe_seconds: int, zone: str, *, from_day_start: bool
) -> pd.Series:
    """Expected bars per day, counted from the start of the first day (or from the series'
    first bar when there is nothing before it) up to the last bar seen: later ones are not due yet."""
    start_day = _local_days(ts_seconds[:1], zone)[0]
    first = int(pd.Timestamp(start_day, tz=zone).timestamp()) if from_day_start else int(ts_seconds[0])
    last = int(ts_seconds[-1])
    anchor = int(ts_seconds[0]) % timeframe_seconds
    grid = np.arange(first - (first - anchor) % timeframe_seconds, last + 1, timeframe_seconds, dtype=np.int64)
    grid = grid[grid >= first]
    grid_expected = expected_mask(grid, calendar, timeframe_seconds)
    return pd.Series(grid_expected.astype(np.int64)).groupby(_local_days(grid, zone)).sum()


def _seen_per_day(
    ts_seconds: np.ndarray,
    flags: np.ndarray,
    score: np.ndarray,
    calendar: MarketCalendar,
    timeframe_seconds: int,
    zone: str,
) -> pd.DataFrame:
    """Per day: bars seen, of them expected ones, each flag's count, mean score."""
    row_expected = expected_mask(ts_seconds, calendar, timeframe_seconds)
    frame = pd.DataFrame(
        {
            "day": _local_days(ts_seconds, zone),
            "actual": row_expected.astype(np.int64),
            **{name: (flags & int(flag)) > 0 for name, flag in COUNTED_FLAGS.items()},
            "score": score,
        }
    )
    return frame.groupby("day").agg(
        actual_bars=("actual", "size"),
        actual_expected=("actual", "sum"),
        **{name: (name, "sum") for name in COUNTED_FLAGS},
        avg_quality_score=("score", "mean"),
    )


def daily_metrics(
    *,
    ts_seconds: np.ndarray,
    flags: np.ndarray,
    score: np.ndarray,
    calendar: MarketCalendar,
    timeframe_seconds: int,
    from_day_start: bool = True,
) -> pd.DataFrame:
    """One row per day from the first bar's day to the last: expected and actual bars,
    completeness, counts of each flag, mean score. Days are the market's local dates
    (UTC dates for daily and longer bars, whose ts is the date itself)."""
    columns = list(DAILY_COLUMNS)
    ts_seconds = np.asarray(ts_seconds, dtype=np.int64)
    if len(ts_seconds) == 0:
        return pd.DataFrame(columns=columns)
    zone = "UTC" if timeframe_seconds >= DAY else calendar.timezone
    expected = _expected_per_day(ts_seconds, calendar, timeframe_seconds, zone, from_day_start=from_day_start)
    grouped = _seen_per_day(ts_seconds, flags, score, calendar, timeframe_seconds, zone)
    result = grouped.reindex(expected.index.union(grouped.index))
    result["expected_bars"] = expected.reindex(result.index).fillna(0).astype(np.int64)
    result = result.fillna({"actual_bars": 0, "actual_expected": 0, **dict.fromkeys(COUNTED_FLAGS, 0)})
    with np.errstate(invalid="ignore", divide="ignore"):
        result["completeness"] = np.where(
            result["expected_bars"] > 0,
            np.minimum(result["actual_expected"] / result["expected_bars"].clip(lower=1), 1.0),
            np.nan,
        )
    result = result.reset_index(names="day")
    for col in ("actual_bars", *COUNTED_FLAGS):
        result[col] = result[col].astype(np.int64)
    return result[columns]
