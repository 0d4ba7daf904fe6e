"""Data quality of a candle series: which bars a market's sessions say should exist,
gaps, per-row flags and score, per-day completeness. Pure numpy/pandas, no ORM.

Which bars are expected comes from the market's calendar (`etl.calendars`): the
exchange's real trading days, holidays and early closes, 24x7 for crypto, the weekly
sessions for FX, and the operator's overrides. A holiday is therefore no gap, no
missing completeness and no series break.
"""

from __future__ import annotations

import enum

import numpy as np
import pandas as pd

from etl import calendars
from etl.calendars import MarketCalendar, expected_mask


class QualityFlag(enum.IntFlag):
    """Bits of market_data_v2.quality_flags."""

    GAP_BEFORE = 1
    VOLUME_ANOMALY = 2
    OHLC_INCONSISTENT = 4
    OUTSIDE_SESSION = 8

    @classmethod
    def names(cls, bits: int | None) -> list[str]:
        return [flag.name.lower() for flag in cls if bits and bits & flag.value]


DAY = calendars.DAY
VOLUME_SPIKE_LIMIT = 10.0  # volume ten times the previous 20 bars' mean
PENALTY = {
    QualityFlag.GAP_BEFORE: 0.25,
    QualityFlag.VOLUME_ANOMALY: 0.25,
    QualityFlag.OHLC_INCONSISTENT: 0.5,
    QualityFlag.OUTSIDE_SESSION: 0.25,
}


def bars_per_day(calendar: MarketCalendar, timeframe_seconds: int) -> int | None:
    """Bars in one trading day (1 on daily bars, None above)."""
    if timeframe_seconds > DAY:
        return None
    if timeframe_seconds == DAY:
        return 1
    return -(-calendar.trading_day_seconds() // timeframe_seconds)


NO_PREV = np.iinfo(np.int64).min  # `gaps_many`'s prev_seconds of a series with no row before its first


def missing_before(ts_seconds: np.ndarray, calendar: MarketCalendar, timeframe_seconds: int) -> np.ndarray:
    """Expected bars missing between each row and the one before it (0 for the first)."""
    ts_seconds = np.asarray(ts_seconds, dtype=np.int64)
    return gaps_many(ts_seconds, np.array([0, len(ts_seconds)]), np.array([NO_PREV]), calendar, timeframe_seconds)[0]


def series_breaks(
    ts_seconds: np.ndarray, calendar: MarketCalendar, timeframe_seconds: int, *, missing: np.ndarray | None = None
) -> np.ndarray:
    """Breaks for the features: the first row, and rows after more missing bars than one
    trading day (0 on a market that is always open), or after a step that is not a whole
    number of bars. (`missing` is accepted for compatibility; they are computed together.)"""
    ts_seconds = np.asarray(ts_seconds, dtype=np.int64)
    return gaps_many(ts_seconds, np.array([0, len(ts_seconds)]), np.array([NO_PREV]), calendar, timeframe_seconds)[1]


def gaps_many(
    ts_seconds: np.ndarray,
    bounds: np.ndarray,
    prev_seconds: np.ndarray,
    calendar: MarketCalendar,
    timeframe_seconds: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(missing, breaks) of many series of one calendar and timeframe: series s is rows
    bounds[s]:bounds[s+1] (sorted by ts), preceded by the stored row prev_seconds[s] (NO_PREV:
    none). missing[i]: expected bars between row i and the row before it in its series (the
    prev row for its first; 0 without one). breaks[i]: row i starts a stretch for the
    features: a series' first row without a prev row, a row after more missing bars than one
    trading day (0 on a market that is always open), or after a step that is not a whole
    number of bars. Nothing is counted across series."""
    ts_seconds = np.asarray(ts_seconds, dtype=np.int64)
    bounds = np.asarray(bounds, dtype=np.int64)
    prev_seconds = np.asarray(prev_seconds, dtype=np.int64)
    tf = timeframe_seconds
    n, lengths = len(ts_seconds), np.diff(bounds)
    has_prev = prev_seconds != NO_PREV
    # Each series with its prev row in front: "extended" series, laid out one after another.
    before = np.cumsum(has_prev)  # prev rows up to and including each series
    rows_at = np.arange(n) + np.repeat(before, lengths)
    ext = np.empty(n + int(has_prev.sum()), dtype=np.int64)
    ext[rows_at] = ts_seconds
    ext_lengths = lengths + has_prev
    ext_starts = np.cumsum(ext_lengths) - ext_lengths
    ext[ext_starts[has_prev]] = prev_seconds[has_prev]
    # Each extended series' own grid of bars from its first row to its last (its first row's
    # alignment), one after another; expected bars counted strictly between consecutive rows.
    used = ext_lengths > 0
    firsts, counts = np.zeros(len(lengths), dtype=np.int64), np.zeros(len(lengths), dtype=np.int64)
    firsts[used] = ext[ext_starts[used]]
    counts[used] = (ext[ext_starts[used] + ext_lengths[used] - 1] - firsts[used]) // tf + 1
    grid_starts = np.cumsum(counts) - counts
    grid = np.repeat(firsts, counts) + (np.arange(counts.sum()) - np.repeat(grid_starts, counts)) * tf
    expected_cum = np.concatenate([[0], np.cumsum(expected_mask(grid, calendar, tf))])
    slot = np.repeat(grid_starts, ext_lengths) + (ext - np.repeat(firsts, ext_lengths)) // tf
    between = np.zeros(len(ext), dtype=np.int64)
    between[1:] = expected_cum[slot[1:]] - expected_cum[slot[:-1] + 1]
    first_row = np.zeros(len(ext), dtype=bool)
    first_row[ext_starts[used]] = True
    missing = np.where(first_row, 0, np.maximum(between, 0))
    tolerance = 0 if calendar.always_open else (bars_per_day(calendar, tf) or 0)
    breaks = (missing > tolerance) | first_row
    # Misaligned rows (a step that is not a whole number of bars) also break the series.
    breaks[1:] |= (np.diff(ext) % tf) != 0
    return missing[rows_at], breaks[rows_at]


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


def _day_numbers(ts_seconds: np.ndarray, zone: str) -> np.ndarray:
    """Local date of each ts, as days since 1970-01-01 (the dates `_local_days` gives)."""
    if zone == "UTC":
        return ts_seconds // DAY
    local = pd.DatetimeIndex(pd.to_datetime(ts_seconds, unit="s", utc=True)).tz_convert(zone).tz_localize(None)
    return local.as_unit("s").asi8 // DAY


def _runs(keys: np.ndarray) -> np.ndarray:
    """Start of each run of equal consecutive keys."""
    return np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]])) if len(keys) else np.zeros(0, np.int64)


_KEY_DAYS = 1 << 32  # (series, day) as one int64: series * _KEY_DAYS + day + _KEY_DAYS // 2


def _expected_many(firsts, lasts, from_day_start, calendar, timeframe_seconds: int, zone: str):
    """Expected bars per (series, day) key: each series' grid from the start of its first day
    (or its first bar) to its last bar, on its first bar's alignment (`_expected_per_day`)."""
    first_days = _day_numbers(firsts, zone)
    if zone == "UTC":
        day_starts = first_days * DAY
    else:
        midnight = pd.DatetimeIndex((first_days * DAY).astype("datetime64[s]")).tz_localize(zone)
        day_starts = midnight.as_unit("s").asi8
    first = np.where(np.asarray(from_day_start, dtype=bool), day_starts, firsts)
    anchor = firsts % timeframe_seconds
    grid_start = first - (first - anchor) % timeframe_seconds
    counts = (lasts - grid_start) // timeframe_seconds + 1
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    grid = np.repeat(grid_start, counts) + offsets * timeframe_seconds
    grid_series = np.repeat(np.arange(len(counts)), counts)
    keep = grid >= np.repeat(first, counts)
    grid, grid_series = grid[keep], grid_series[keep]
    grid_key = grid_series * _KEY_DAYS + _day_numbers(grid, zone) + _KEY_DAYS // 2
    grid_starts = _runs(grid_key)
    grid_expected = expected_mask(grid, calendar, timeframe_seconds).astype(np.int64)
    expected = np.add.reduceat(grid_expected, grid_starts) if len(grid_starts) else grid_expected[:0]
    return grid_key[grid_starts], expected


def daily_metrics_many(
    *,
    ts_seconds: np.ndarray,
    flags: np.ndarray,
    score: np.ndarray,
    bounds: np.ndarray,
    from_day_start: np.ndarray,
    calendar: MarketCalendar,
    timeframe_seconds: int,
) -> dict[str, np.ndarray]:
    """`daily_metrics` of many series of one calendar and timeframe in one pass: series i is
    rows bounds[i]:bounds[i+1] (sorted by ts, not empty). Returns equal-length arrays: `series`
    (i), `day` (days since 1970) and the DAILY_COLUMNS after it, the same values
    `daily_metrics` gives each series on its own (a test checks it)."""
    ts_seconds = np.asarray(ts_seconds, dtype=np.int64)
    flags = np.asarray(flags, dtype=np.int64)
    zone = "UTC" if timeframe_seconds >= DAY else calendar.timezone
    lengths = np.diff(bounds)
    series = np.repeat(np.arange(len(lengths)), lengths)
    firsts, lasts = ts_seconds[bounds[:-1]], ts_seconds[bounds[1:] - 1]

    # Bars seen per day: runs of equal (series, local day), the rows being sorted by both.
    day = _day_numbers(ts_seconds, zone)
    seen_key = series * _KEY_DAYS + day + _KEY_DAYS // 2
    starts = _runs(seen_key)
    row_expected = expected_mask(ts_seconds, calendar, timeframe_seconds).astype(np.int64)
    seen = {
        "actual_bars": np.diff(np.append(starts, len(seen_key))),
        "actual_expected": np.add.reduceat(row_expected, starts) if len(starts) else row_expected[:0],
    }
    for name, flag in COUNTED_FLAGS.items():
        hit = ((flags & int(flag)) > 0).astype(np.int64)
        seen[name] = np.add.reduceat(hit, starts) if len(starts) else hit[:0]
    scored = ~np.isnan(score)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.add.reduceat(np.where(scored, score, 0.0), starts) if len(starts) else score[:0]
        counted = np.add.reduceat(scored.astype(np.int64), starts) if len(starts) else row_expected[:0]
        seen["avg_quality_score"] = np.where(counted > 0, total / np.maximum(counted, 1), np.nan)

    expected_keys, expected = _expected_many(firsts, lasts, from_day_start, calendar, timeframe_seconds, zone)

    # Every day either side knows of, per series.
    seen_keys = seen_key[starts]
    keys = np.union1d(seen_keys, expected_keys)
    out: dict[str, np.ndarray] = {
        "series": keys // _KEY_DAYS,
        "day": keys % _KEY_DAYS - _KEY_DAYS // 2,
    }
    at_expected = np.searchsorted(keys, expected_keys)
    out["expected_bars"] = np.zeros(len(keys), dtype=np.int64)
    out["expected_bars"][at_expected] = expected
    at_seen = np.searchsorted(keys, seen_keys)
    for name in ("actual_bars", "actual_expected", *COUNTED_FLAGS):
        out[name] = np.zeros(len(keys), dtype=np.int64)
        out[name][at_seen] = seen[name]
    out["avg_quality_score"] = np.full(len(keys), np.nan)
    out["avg_quality_score"][at_seen] = seen["avg_quality_score"]
    with np.errstate(invalid="ignore", divide="ignore"):
        out["completeness"] = np.where(
            out["expected_bars"] > 0,
            np.minimum(out["actual_expected"] / np.maximum(out["expected_bars"], 1), 1.0),
            np.nan,
        )
    del out["actual_expected"]
    return out
