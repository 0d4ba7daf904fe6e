"""Features, quality score and flags of one series in market_data_v2, computed for its
stale tail, then its daily quality metrics and status refreshed, and the computation logged.

Incremental: the first row whose features are stale (`features_revision` differs
from `revision`: new or restated bars) and everything after it are recomputed,
reading only the context the longest window needs before it; the recursions
continue from the state stored in the row before. A test checks that this gives
the same bits as a full recompute.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from django.db import connection, transaction

from enrichment.candles import candle_quality
from enrichment.candles.feature_list import FEATURE_COLUMNS, FUNDING_WINDOW, INPUT_COLUMNS, RECURSIVE, lookback_bars
from enrichment.candles.models import EnrichmentComputeLog, EnrichmentStatus, FeatureRun
from enrichment.candles.services.candle_upsert import copy_into, series_lock
from enrichment.candles.services.series_refs import timeframe_parse
from etl.calendars import MarketCalendar, market_calendar
from etl.models import Symbol

WRITE_COLUMNS = (*FEATURE_COLUMNS, "quality_score", "quality_flags")
# data_quality_metrics' columns (candle_quality.DAILY_COLUMNS), with the array type each is sent as.
METRIC_COLUMNS = dict(
    zip(
        candle_quality.DAILY_COLUMNS,
        ("date[]", "int[]", "int[]", "float8[]", "int[]", "int[]", "int[]", "int[]", "float8[]"),
        strict=True,
    )
)
SERIES = "symbol_id = %s AND timeframe = %s"


@dataclass(frozen=True, slots=True)
class ComputeResult:
    symbol_id: int
    timeframe: str
    mode: str
    rows_read: int
    rows_written: int
    first_ts: datetime | None
    last_ts: datetime | None
    duration_ms: float
    log_id: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class TailResult:
    """What recomputing the stale tail of one series did."""

    mode: str
    rows_read: int
    rows_written: int
    first_ts: datetime | None
    last_ts: datetime | None


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """One series, with what its computation needs to know about it."""

    symbol: Symbol
    timeframe: str
    seconds: int
    calendar: MarketCalendar

    @property
    def params(self) -> list:
        return [self.symbol.pk, self.timeframe]


@dataclass(frozen=True, slots=True)
class ContextRows:
    """The rows read for a computation: the context before the first stale row, then the tail."""

    ts: pd.DatetimeIndex | None  # None where the caller keeps the timestamps itself
    ts_seconds: np.ndarray
    data: dict[str, np.ndarray]  # INPUT_COLUMNS and RECURSIVE as float64, NULL as NaN
    emit_from: int  # index of the first stale row
    row_offset: int  # rows of the series before the first one read
    prev_seconds: int | None  # the series' row before the first one read, if any


@dataclass(frozen=True, slots=True)
class ManyRows:
    """The rows of many series read for one computation (`compute_many`), one after another:
    series s is rows bounds[s]:bounds[s+1], sorted by ts; per series, `emit_from` (index of
    its first stale row in its rows), `row_offset` (its rows before the first one read) and
    `prev_seconds` (its row before the first one read; candle_quality.NO_PREV: none)."""

    ts_seconds: np.ndarray
    data: dict[str, np.ndarray]  # INPUT_COLUMNS and RECURSIVE as float64, NULL as NaN
    bounds: np.ndarray
    emit_from: np.ndarray
    row_offset: np.ndarray
    prev_seconds: np.ndarray

    @classmethod
    def build(cls, *, ts_seconds, data, bounds, dirty_seconds, row_offset, prev_seconds) -> ManyRows:
        """`emit_from` from each series' first stale ts (`dirty_seconds`): its rows before it."""
        ts_seconds = np.asarray(ts_seconds, dtype=np.int64)
        bounds = np.asarray(bounds, dtype=np.int64)
        lengths = np.diff(bounds)
        earlier = np.concatenate([[0], np.cumsum(ts_seconds < np.repeat(np.asarray(dirty_seconds), lengths))])
        return cls(
            ts_seconds=ts_seconds,
            data=data,
            bounds=bounds,
            emit_from=earlier[bounds[1:]] - earlier[bounds[:-1]],
            row_offset=np.asarray(row_offset, dtype=np.int64),
            prev_seconds=np.asarray(prev_seconds, dtype=np.int64),
        )

    def emitted(self) -> np.ndarray:
        """Indices of the rows `compute_many` returns, in its order."""
        lengths = np.diff(self.bounds)
        local = np.arange(len(self.ts_seconds)) - np.repeat(self.bounds[:-1], lengths)
        return np.flatnonzero(local >= np.repeat(self.emit_from, lengths))


def features_compute(
    *, symbol: Symbol, timeframe: str, full: bool = False, run: FeatureRun | None = None
) -> ComputeResult:
    """Compute features, quality score and flags for the stale tail of one series (all of it
    with `full`), then refresh its daily quality metrics and status. Logs the computation."""
    series = SeriesKey(symbol, timeframe, timeframe_parse(timeframe), market_calendar(symbol.market))
    started = time.perf_counter()
    try:
        with transaction.atomic(), connection.cursor() as cur:
            series_lock(symbol_id=symbol.pk, timeframe=timeframe)
            tail = _compute_tail(cur, series, full=full)
            if tail.rows_written:
                _refresh_metrics(cur, series, tail.first_ts)
            _refresh_status(cur, series, error="")
    except Exception as exc:
        _record_failure(series, run=run, full=full, error=str(exc)[:2000], started=started)
        raise
    duration = (time.perf_counter() - started) * 1000
    log = EnrichmentComputeLog.objects.create(
        run=run,
        symbol=symbol,
        timeframe=timeframe,
        mode=tail.mode,
        rows_read=tail.rows_read,
        rows_written=tail.rows_written,
        first_ts=tail.first_ts,
        last_ts=tail.last_ts,
        duration_ms=duration,
    )
    return ComputeResult(
        symbol_id=symbol.pk,
        timeframe=timeframe,
        mode=tail.mode,
        rows_read=tail.rows_read,
        rows_written=tail.rows_written,
        first_ts=tail.first_ts,
        last_ts=tail.last_ts,
        duration_ms=round(duration, 3),
        log_id=log.pk,
    )


def _record_failure(series: SeriesKey, *, run: FeatureRun | None, full: bool, error: str, started: float) -> None:
    EnrichmentStatus.objects.update_or_create(
        symbol=series.symbol,
        timeframe=series.timeframe,
        defaults={"state": EnrichmentStatus.State.FAILED, "last_error": error},
    )
    EnrichmentComputeLog.objects.create(
        run=run,
        symbol=series.symbol,
        timeframe=series.timeframe,
        mode=EnrichmentComputeLog.Mode.FULL if full else EnrichmentComputeLog.Mode.INCREMENTAL,
        succeeded=False,
        error=error,
        duration_ms=(time.perf_counter() - started) * 1000,
    )


def _scalar(cur, sql: str, params: list) -> Any:
    cur.execute(sql, params)
    row = cur.fetchone()
    return row[0] if row else None


def _first_stale(cur, series: SeriesKey, *, full: bool) -> datetime | None:
    stale = "" if full else " AND features_revision IS DISTINCT FROM revision"
    return _scalar(cur, f"SELECT min(ts) FROM market_data_v2 WHERE {SERIES}{stale}", series.params)  # noqa: S608


def _context_from(cur, series: SeriesKey, dirty: datetime, lookback: int) -> datetime:
    """Context: `lookback` rows before the first stale one, the earlier funding observations
    the percentile needs, and one more row to tell whether the context starts after a gap."""
    key = series.params
    before = f"SELECT ts FROM market_data_v2 WHERE {SERIES} AND ts < %s"  # noqa: S608
    by_rows = _scalar(cur, f"{before} ORDER BY ts DESC OFFSET %s LIMIT 1", key + [dirty, lookback])
    by_funding = _scalar(
        cur,
        f"{before} AND funding_rate IS NOT NULL ORDER BY ts DESC OFFSET %s LIMIT 1",
        key + [dirty, FUNDING_WINDOW - 2],
    )
    earliest = _scalar(cur, f"SELECT min(ts) FROM market_data_v2 WHERE {SERIES}", key)  # noqa: S608
    if by_rows is None:
        return earliest
    if by_funding is not None:
        return min(by_rows, by_funding)
    if _scalar(cur, f"{before} AND funding_rate IS NOT NULL LIMIT 1", key + [dirty]):
        return earliest  # fewer earlier funding observations than a window: read them all
    return by_rows


def _read_context(cur, series: SeriesKey, *, dirty: datetime, context_from: datetime) -> ContextRows:
    """The rows from `context_from` on, with series breaks and missing-bar counts; the row
    before them (if any) tells whether the first one continues an older stretch."""
    key = series.params
    columns = ["ts", *INPUT_COLUMNS, *RECURSIVE]
    cur.execute(
        f"SELECT {', '.join(columns)} FROM market_data_v2 WHERE {SERIES} AND ts >= %s ORDER BY ts",  # noqa: S608
        key + [context_from],
    )
    frame = pd.DataFrame(cur.fetchall(), columns=columns)
    ts = pd.DatetimeIndex(pd.to_datetime(frame["ts"], utc=True))
    prev = _scalar(cur, f"SELECT max(ts) FROM market_data_v2 WHERE {SERIES} AND ts < %s", key + [context_from])  # noqa: S608
    # Windows are aligned to the series' global row numbers: count the rows before the context.
    row_offset = _scalar(cur, f"SELECT count(*) FROM market_data_v2 WHERE {SERIES} AND ts < %s", key + [context_from])  # noqa: S608
    return context_rows(
        series,
        ts_seconds=ts.as_unit("s").asi8,
        data={c: frame[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in (*INPUT_COLUMNS, *RECURSIVE)},
        dirty_seconds=int(pd.Timestamp(dirty).timestamp()),
        row_offset=int(row_offset),
        prev_seconds=None if prev is None else int(pd.Timestamp(prev).timestamp()),
        ts=ts,
    )


def context_rows(
    series: SeriesKey,
    *,
    ts_seconds: np.ndarray,
    data: dict[str, np.ndarray],
    dirty_seconds: int,
    row_offset: int,
    prev_seconds: int | None,
    ts: pd.DatetimeIndex | None = None,
) -> ContextRows:
    """The rows read for one series' computation; the row before them (`prev_seconds`, if
    any) tells whether the first one continues an older stretch."""
    return ContextRows(
        ts=ts,
        ts_seconds=ts_seconds,
        data=data,
        emit_from=int(np.searchsorted(ts_seconds, dirty_seconds)),
        row_offset=row_offset,
        prev_seconds=prev_seconds,
    )


def compute_rows(series: SeriesKey, rows: ContextRows) -> dict[str, np.ndarray]:
    """Features, quality score and flags of one series' rows from `emit_from` on:
    `compute_many` with one series."""
    many = ManyRows(
        ts_seconds=np.asarray(rows.ts_seconds, dtype=np.int64),
        data=rows.data,
        bounds=np.array([0, len(rows.ts_seconds)], dtype=np.int64),
        emit_from=np.array([rows.emit_from], dtype=np.int64),
        row_offset=np.array([rows.row_offset], dtype=np.int64),
        prev_seconds=np.array([candle_quality.NO_PREV if rows.prev_seconds is None else rows.prev_seconds]),
    )
    return compute_many([series], many)


def compute_many(keys: list[SeriesKey], rows: ManyRows) -> dict[str, np.ndarray]:
    """Features, quality score and flags of many series (keys[s] is series s of `rows`) from
    each one's `emit_from` on, over their concatenated rows: one pass of the kernels per group
    of series with the same timeframe and calendar (usually one). Returns the rows
    `rows.emitted()` names, in that order; each series' values are those it gets on its own
    (one series is the per-series path, `compute_rows`)."""
    groups: dict[tuple[int, int], int] = {}
    label = np.array([groups.setdefault((key.seconds, id(key.calendar)), len(groups)) for key in keys])
    if len(groups) == 1:
        return _compute_group(keys[0], rows)
    # Several groups: each on its own rows, the results put back in row order.
    emitted = rows.emitted()
    out: dict[str, np.ndarray] = {}
    lengths = np.diff(rows.bounds)
    row_label = np.repeat(label, lengths)
    for g in range(len(groups)):
        members = np.flatnonzero(label == g)
        picked = np.flatnonzero(row_label == g)
        sub = ManyRows(
            ts_seconds=rows.ts_seconds[picked],
            data={c: v[picked] for c, v in rows.data.items()},
            bounds=np.concatenate([[0], np.cumsum(lengths[members])]),
            emit_from=rows.emit_from[members],
            row_offset=rows.row_offset[members],
            prev_seconds=rows.prev_seconds[members],
        )
        part = _compute_group(keys[members[0]], sub)
        at = np.searchsorted(emitted, picked[sub.emitted()])
        for c, values in part.items():
            out.setdefault(c, np.full(len(emitted), np.nan))[at] = values
    return out


def _compute_group(key: SeriesKey, rows: ManyRows) -> dict[str, np.ndarray]:
    """`compute_many` of series that share `key`'s timeframe and calendar."""
    # numba adds 0.15-0.21 s to an import on top of pandas (measured: `import pandas; import numba`
    # three times); importing the kernels here keeps it off every manage.py start-up.
    from enrichment.candles.feature_kernels import compute_features_many

    n = len(rows.ts_seconds)
    bars_per_day = candle_quality.bars_per_day(key.calendar, key.seconds)
    missing, breaks = candle_quality.gaps_many(
        rows.ts_seconds, rows.bounds, rows.prev_seconds, key.calendar, key.seconds
    )
    data = {c: np.asarray(rows.data[c], dtype=np.float64) for c in INPUT_COLUMNS}
    # The stored recursive state of each series' row before its first stale one (NULL while warming up).
    before = np.clip(rows.bounds[:-1] + rows.emit_from - 1, 0, max(n - 1, 0))
    has_state = (rows.emit_from > 0) & (n > 0)
    state = {c: np.where(has_state, rows.data[c][before] if n else np.nan, np.nan) for c in RECURSIVE}
    out = compute_features_many(
        data,
        timeframe_seconds=key.seconds,
        bars_per_day=bars_per_day,
        breaks=breaks,
        bounds=rows.bounds,
        emit_from=rows.emit_from,
        state=state,
        row_offset=rows.row_offset,
    )
    tail = rows.emitted() if rows.emit_from.any() else slice(None)
    flags, score = candle_quality.row_quality(
        open_=data["open"][tail],
        high=data["high"][tail],
        low=data["low"][tail],
        close=data["close"][tail],
        volume=data["volume"][tail],
        volume_spike_score=out["volume_spike_score"],
        missing=missing[tail],
        expected=candle_quality.expected_mask(rows.ts_seconds[tail], key.calendar, key.seconds),
    )
    out["quality_score"], out["quality_flags"] = score, flags.astype(np.float64)
    return out


def _compute_tail(cur, series: SeriesKey, *, full: bool) -> TailResult:
    """Find the first stale row, read its context, compute and write the tail."""
    dirty = _first_stale(cur, series, full=full)
    if dirty is None:
        return TailResult(EnrichmentComputeLog.Mode.NOTHING, 0, 0, None, None)
    bars_per_day = candle_quality.bars_per_day(series.calendar, series.seconds)
    lookback = lookback_bars(timeframe_seconds=series.seconds, bars_per_day=bars_per_day)
    context_from = _context_from(cur, series, dirty, lookback)
    rows = _read_context(cur, series, dirty=dirty, context_from=context_from)
    out = compute_rows(series, rows)
    _write_features(cur, series, rows.ts[rows.emit_from :], out)
    incremental = not full and rows.emit_from > 0
    return TailResult(
        mode=EnrichmentComputeLog.Mode.INCREMENTAL if incremental else EnrichmentComputeLog.Mode.FULL,
        rows_read=len(rows.ts),
        rows_written=len(rows.ts) - rows.emit_from,
        first_ts=rows.ts[rows.emit_from].to_pydatetime(),
        last_ts=rows.ts[-1].to_pydatetime(),
    )


def _write_features(cur, series: SeriesKey, ts: pd.DatetimeIndex, out: dict[str, np.ndarray]) -> None:
    cols = ", ".join(f"{c} float8" for c in WRITE_COLUMNS)
    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS v2_features (ts timestamptz NOT NULL, {cols}) ON COMMIT DROP")
    cur.execute("TRUNCATE v2_features")
    copy_into(cur, table="v2_features", columns=list(WRITE_COLUMNS), ts=ts, arrays=[out[c] for c in WRITE_COLUMNS])
    sets = ", ".join(f"{c} = s.{c}" for c in FEATURE_COLUMNS)
    cur.execute(
        f"""
        UPDATE market_data_v2 m SET {sets}, quality_score = s.quality_score,
            quality_flags = s.quality_flags::int, features_revision = m.revision, computed_at = now()
        FROM v2_features s
        WHERE m.symbol_id = %s AND m.timeframe = %s AND m.ts = s.ts
        """,  # noqa: S608 - column names are constants
        series.params,
    )


def metrics_day_start(series: SeriesKey, since: datetime) -> pd.Timestamp:
    """Start of the day (the market's local day; UTC for daily and longer bars) of `since`:
    the daily metrics are recomputed from there."""
    zone = "UTC" if series.seconds >= candle_quality.DAY else series.calendar.timezone
    return pd.Timestamp(since).tz_convert(zone).normalize()


def _refresh_metrics(cur, series: SeriesKey, since: datetime) -> None:
    """Recompute data_quality_metrics for every day from the first recomputed bar's day on."""
    day_start = metrics_day_start(series, since)
    where = SERIES
    key = series.params
    cur.execute(
        f"SELECT ts, quality_flags, quality_score FROM market_data_v2 WHERE {where} AND ts >= %s ORDER BY ts",  # noqa: S608
        key + [day_start.to_pydatetime()],
    )
    rows = cur.fetchall()
    if not rows:
        return
    earlier = _scalar(cur, f"SELECT 1 FROM market_data_v2 WHERE {where} AND ts < %s LIMIT 1", key + [rows[0][0]])  # noqa: S608
    ts_s = pd.DatetimeIndex(pd.to_datetime([r[0] for r in rows], utc=True)).as_unit("s").asi8
    metrics = candle_quality.daily_metrics(
        ts_seconds=ts_s,
        flags=np.array([r[1] or 0 for r in rows], dtype=np.int64),
        score=np.array([np.nan if r[2] is None else r[2] for r in rows]),
        calendar=series.calendar,
        timeframe_seconds=series.seconds,
        from_day_start=bool(earlier),
    )
    if metrics.empty:
        return
    cols = list(METRIC_COLUMNS)
    arrays = [metrics["day"].tolist()] + [[None if pd.isna(v) else v for v in metrics[c].tolist()] for c in cols[1:]]
    unnest = ", ".join(f"%s::{t}" for t in METRIC_COLUMNS.values())
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols[1:])
    cur.execute(
        f"""
        INSERT INTO data_quality_metrics (symbol_id, timeframe, {", ".join(cols)}, computed_at)
        SELECT %s, %s, u.*, now() FROM unnest({unnest}) AS u({", ".join(cols)})
        ON CONFLICT (symbol_id, timeframe, day) DO UPDATE SET {updates}, computed_at = now()
        """,  # noqa: S608 - column names are constants
        key + arrays,
    )


def _refresh_status(cur, series: SeriesKey, *, error: str) -> None:
    symbol, timeframe = series.symbol, series.timeframe
    cur.execute(
        """
        INSERT INTO enrichment_status (symbol_id, timeframe, state, rows, first_ts, last_ts, last_computed_at,
                                       avg_quality_score, quality_sum, quality_n, completeness, complete_bars,
                                       expected_bars, last_error, updated_at)
        SELECT %s, %s, a.state, a.n, a.first_ts, a.last_ts, a.computed, a.quality, a.quality_sum, a.quality_n,
               q.complete::float8 / NULLIF(q.expected, 0), q.complete, q.expected, %s, now()
        FROM (
            SELECT CASE WHEN count(*) FILTER (WHERE features_revision IS DISTINCT FROM revision) > 0
                        THEN 'pending' ELSE 'ok' END AS state,
                   count(*) AS n, min(ts) AS first_ts, max(ts) AS last_ts, max(computed_at) AS computed,
                   avg(quality_score) AS quality, sum(quality_score::numeric) AS quality_sum,
                   count(quality_score) AS quality_n
            FROM market_data_v2 WHERE symbol_id = %s AND timeframe = %s
        ) a
        CROSS JOIN (
            SELECT sum(LEAST(actual_bars, expected_bars)) AS complete, sum(expected_bars) AS expected
            FROM data_quality_metrics q WHERE q.symbol_id = %s AND q.timeframe = %s
        ) q
        ON CONFLICT (symbol_id, timeframe) DO UPDATE SET
            state = EXCLUDED.state, rows = EXCLUDED.rows, first_ts = EXCLUDED.first_ts, last_ts = EXCLUDED.last_ts,
            last_computed_at = EXCLUDED.last_computed_at, avg_quality_score = EXCLUDED.avg_quality_score,
            quality_sum = EXCLUDED.quality_sum, quality_n = EXCLUDED.quality_n,
            completeness = EXCLUDED.completeness, complete_bars = EXCLUDED.complete_bars,
            expected_bars = EXCLUDED.expected_bars, last_error = EXCLUDED.last_error, updated_at = now()
        """,
        [symbol.pk, timeframe, error, symbol.pk, timeframe, symbol.pk, timeframe],
    )


def compute_log_prune(cutoff: datetime) -> int:
    """Delete the compute log rows older than `cutoff` (the retention pruner); return how many."""
    return EnrichmentComputeLog.objects.filter(created_at__lt=cutoff).delete()[0]
