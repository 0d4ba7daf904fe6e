"""The live poller's writes, for many series at once: the new bars of every series a poll
fetched go in with one staging COPY and one upsert into `market_data` and `market_data_v2`;
the features of those series' stale tails are computed from one read and stored with one
write; daily quality metrics, status, the compute log and `live_series` follow, one statement
each. The results are the same as one series at a time (`candle_upsert.candles_upsert`, then
`feature_compute.features_compute`): a full recompute gives the same bits (tested).

Two transactions: the bars and their features (under the series locks, which feature runs
and backfills take too: the features are visible when the bars are), then the summaries. If
the batch fails, each series is written alone, so one bad series does not stop the others.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from django.db import connection, transaction

from enrichment.candles import candle_quality
from enrichment.candles.feature_list import FEATURE_COLUMNS, FUNDING_WINDOW, INPUT_COLUMNS, RECURSIVE, lookback_bars
from enrichment.candles.models import CANDLE_COLUMNS, EnrichmentComputeLog
from enrichment.candles.services.candle_upsert import copy_into
from enrichment.candles.services.feature_compute import ManyRows, SeriesKey, compute_many
from enrichment.candles.services.feature_scratch import packed_out
from enrichment.providers import clock
from etl.calendars import MarketCalendar
from etl.locks import FEATURE_SERIES, xact_locks
from etl.models import Symbol
from etl.services.partitions import partitions_ensure

log = logging.getLogger(__name__)

# market_data_v2's columns a source may lack: a bar restated without them keeps what it had.
OHLCV = ("open", "high", "low", "close", "volume")
SUPPLEMENTARY = tuple(c for c in CANDLE_COLUMNS if c not in OHLCV)
# The extras a later poll may bring for a bar stored before (see remote_sources.binance_extras).
EXTRAS = ("open_interest", "funding_rate", "long_short_account_ratio", "taker_buy_volume")
WRITE_COLUMNS = (*FEATURE_COLUMNS, "quality_score", "quality_flags")
AMENDMENT_KIND = "candle_amendment"  # as candle_upsert writes them
DAILY_TYPES = ("date[]", "int[]", "int[]", "float8[]", "int[]", "int[]", "int[]", "int[]", "float8[]")


@dataclass(slots=True)
class Fetched:
    """One series' bars from this poll (rounded, sorted, within the poll's window)."""

    symbol: Symbol
    frame: pd.DataFrame
    provider: str
    polled_at: datetime
    earlier: pd.DataFrame | None = None  # extras for bars an earlier poll stored (ts + EXTRAS)


@dataclass(frozen=True, slots=True)
class Tail:
    symbol_id: int
    incremental: bool
    rows_read: int
    rows_written: int
    first_ts: datetime
    last_ts: datetime


@dataclass(slots=True)
class Written:
    """What happened to each series: stored bars (and when), or an error; the tails computed."""

    stored_at: dict[int, datetime] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    tails: list[Tail] = field(default_factory=list)
    seconds_spent: float = 0.0


def live_write(items: list[Fetched], *, timeframe: str, seconds: int, calendar: MarketCalendar) -> Written:
    """Write the bars and features of `items` (all of one market and timeframe). Returns when
    each series' features were stored, or its error; `live_summaries` refreshes the rest."""
    written = Written()
    if not items:
        return written
    started = time.perf_counter()
    try:
        tails = _write_batch(items, timeframe=timeframe, seconds=seconds, calendar=calendar)
        stored_at = clock.now()
        written.stored_at.update({item.symbol.pk: stored_at for item in items})
    except Exception:  # one bad series must not stop the others: write them one by one
        log.exception("batched live write of %d series failed; writing them one by one", len(items))
        tails = []
        for item in items:
            try:
                tails += _write_batch([item], timeframe=timeframe, seconds=seconds, calendar=calendar)
                written.stored_at[item.symbol.pk] = clock.now()
            except Exception as exc:  # logged and recorded on the series
                log.exception("live write of %s failed", item.symbol)
                written.errors[item.symbol.pk] = str(exc)[:2000]
    written.tails = tails
    written.seconds_spent = time.perf_counter() - started
    return written


def _write_batch(items: list[Fetched], *, timeframe: str, seconds: int, calendar: MarketCalendar) -> list[Tail]:
    ids = [item.symbol.pk for item in items]
    with transaction.atomic(), connection.cursor() as cur:
        xact_locks(FEATURE_SERIES, [f"{i}:{timeframe}" for i in ids])  # the chunked feature step's keys
        bars = [item for item in items if not item.frame.empty]
        if bars:
            first = min(item.frame["ts"].iloc[0] for item in bars)
            last = max(item.frame["ts"].iloc[-1] for item in bars)
            for table in ("market_data", "market_data_v2"):
                partitions_ensure(table=table, first=first, last=last)
            providers = sorted({item.provider for item in bars})
            _stage_bars(cur, bars, providers)
            _insert_market_data(cur, timeframe)
            _write_amendments(cur, timeframe, providers)
            _upsert_v2(cur, timeframe, providers)
        _fill_earlier(cur, [item for item in items if item.earlier is not None and not item.earlier.empty], timeframe)
        # The status rows are recounted by `live_summaries`, in a later transaction: until then
        # their kept count and quality sums are not these rows' (a late bar between stored ones,
        # a restated score), and the hourly feature step must count them (`feature_batch`).
        cur.execute(
            "UPDATE enrichment_status SET quality_n = NULL"
            " WHERE symbol_id = ANY(%s) AND timeframe = %s AND quality_n IS NOT NULL",
            [ids, timeframe],
        )
        return _compute_features(cur, ids, timeframe=timeframe, seconds=seconds, calendar=calendar)


def _stage(cur, name: str, columns: tuple[str, ...], ts, arrays: list[np.ndarray]) -> None:
    """A temporary table (ts, sid, *columns) of float8, filled with one binary COPY."""
    cols = ", ".join(f"{c} float8" for c in ("sid", *columns))
    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {name} (ts timestamptz NOT NULL, {cols}) ON COMMIT DROP")
    cur.execute(f"TRUNCATE {name}")  # noqa: S608 - our own table name
    copy_into(cur, table=name, columns=["sid", *columns], ts=ts, arrays=arrays)


def _stage_bars(cur, items: list[Fetched], providers: list[str]) -> None:
    frames = [item.frame for item in items]
    ts = pd.DatetimeIndex(pd.concat([f["ts"] for f in frames], ignore_index=True))
    sid = np.concatenate([np.full(len(item.frame), item.symbol.pk, dtype=np.float64) for item in items])
    src = np.concatenate([np.full(len(item.frame), providers.index(item.provider) + 1.0) for item in items])
    values = [np.concatenate([f[c].to_numpy(dtype=np.float64) for f in frames]) for c in CANDLE_COLUMNS]
    _stage(cur, "live_stage", (*CANDLE_COLUMNS, "src"), ts, [sid, *values, src])


def _insert_market_data(cur, timeframe: str) -> None:
    """The raw candles, linked to their symbols, with the kline extras the local source reads
    back; bars already there are left as they are. `import_file_id` NULL: the poller wrote them.
    Through text, so each numeric gets the float's shortest exact digits (as psycopg sends them)."""
    cur.execute(
        """
        INSERT INTO market_data (ticker, market, timeframe, ts, open, high, low, close, volume, asset_class,
                                 symbol_id, extra, updated_at)
        SELECT y.ticker, mk.code, %s, s.ts, s.open::text::numeric, s.high::text::numeric, s.low::text::numeric,
               s.close::text::numeric, s.volume::text::numeric, ac.code, y.id,
               NULLIF(jsonb_strip_nulls(jsonb_build_object('taker_buy_volume', s.taker_buy_volume,
                                                           'quote_volume', s.quote_volume, 'trades', s.trades)),
                      '{}'::jsonb),
               now()
        FROM live_stage s
        JOIN symbols y ON y.id = s.sid::bigint
        JOIN markets mk ON mk.id = y.market_id
        LEFT JOIN asset_classes ac ON ac.id = y.asset_class_id
        ORDER BY s.sid, s.ts
        ON CONFLICT (ticker, market, timeframe, ts) DO NOTHING
        """,
        [timeframe],
    )


def _new_value(col: str, table: str, excluded: str) -> str:
    value = f"{excluded}.{col}::bigint" if col == "trades" else f"{excluded}.{col}"
    return f"COALESCE({value}, {table}.{col})" if col in SUPPLEMENTARY else value


def _changed(table: str, excluded: str) -> str:
    old = ", ".join(f"{table}.{c}" for c in CANDLE_COLUMNS)
    new = ", ".join(_new_value(c, table, excluded) for c in CANDLE_COLUMNS)
    return f"({old}) IS DISTINCT FROM ({new})"


def _write_amendments(cur, timeframe: str, providers: list[str]) -> None:
    """A bar that was there already and changes gets one amendment, as candle_upsert writes it."""
    fields = ", ".join(
        f"CASE WHEN m.{c} IS DISTINCT FROM {_new_value(c, 'm', 's')} THEN '{c}' END" for c in CANDLE_COLUMNS
    )
    old = ", ".join(
        f"'{c}', CASE WHEN m.{c} IS DISTINCT FROM {_new_value(c, 'm', 's')} THEN to_jsonb(m.{c}) END"
        for c in CANDLE_COLUMNS
    )
    new = ", ".join(
        f"'{c}', CASE WHEN m.{c} IS DISTINCT FROM {v} THEN to_jsonb({v}) END"
        for c, v in ((c, _new_value(c, "m", "s")) for c in CANDLE_COLUMNS)
    )
    cur.execute(
        f"""
        INSERT INTO data_corrections
            (kind, run_ref, table_name, ticker, market, field, old_value, new_value, row_count, detail,
             created_by, created_at)
        SELECT %s, 'live', 'market_data_v2', y.ticker, mk.code, concat_ws(',', {fields}),
               jsonb_strip_nulls(jsonb_build_object({old}))::text,
               jsonb_strip_nulls(jsonb_build_object({new}))::text,
               1,
               jsonb_build_object('symbol_id', m.symbol_id, 'timeframe', m.timeframe, 'ts', m.ts,
                                  'revision_from', m.revision, 'revision_to', m.revision + 1,
                                  'source_from', m.source, 'source_to', (%s::text[])[s.src::int]),
               '', now()
        FROM live_stage s
        JOIN market_data_v2 m ON m.symbol_id = s.sid::bigint AND m.timeframe = %s AND m.ts = s.ts
        JOIN symbols y ON y.id = m.symbol_id
        JOIN markets mk ON mk.id = y.market_id
        WHERE {_changed("m", "s")}
        """,  # noqa: S608 - column names are constants of this module
        [AMENDMENT_KIND, providers, timeframe],
    )


def _upsert_v2(cur, timeframe: str, providers: list[str]) -> None:
    """New bars inserted; changed ones updated with revision + 1 and stale features; unchanged
    ones not written at all (candle_upsert's rules)."""
    cols = ", ".join(CANDLE_COLUMNS)
    select = ", ".join(f"s.{c}::bigint" if c == "trades" else f"s.{c}" for c in CANDLE_COLUMNS)
    updates = ", ".join(f"{c} = {_new_value(c, 'market_data_v2', 'EXCLUDED')}" for c in CANDLE_COLUMNS)
    cur.execute(
        f"""
        INSERT INTO market_data_v2 (symbol_id, timeframe, ts, {cols}, source, revision, quality_flags, updated_at)
        SELECT s.sid::bigint, %s, s.ts, {select}, (%s::text[])[s.src::int], 1, 0, now()
        FROM live_stage s ORDER BY s.sid, s.ts
        ON CONFLICT (symbol_id, timeframe, ts) DO UPDATE SET {updates},
            source = EXCLUDED.source,
            revision = market_data_v2.revision + 1,
            features_revision = NULL,
            updated_at = now()
        WHERE {_changed("market_data_v2", "EXCLUDED")}
        """,  # noqa: S608 - column names are constants of this module
        [timeframe, providers],
    )


def _fill_earlier(cur, items: list[Fetched], timeframe: str) -> None:
    """Extras a later poll brought for bars stored before (a symbol's statistics come a few
    polls after their bar, see remote_sources.binance_extras): they fill what is still NULL,
    never replace a value, so this completes a bar rather than amending it (no amendment row);
    the bar's revision moves on, so its features and those after it are recomputed."""
    if not items:
        return
    frames = [item.earlier.reindex(columns=["ts", *EXTRAS]) for item in items]
    ts = pd.DatetimeIndex(pd.concat([f["ts"] for f in frames], ignore_index=True))
    sid = np.concatenate(
        [np.full(len(f), item.symbol.pk, dtype=np.float64) for f, item in zip(frames, items, strict=True)]
    )
    arrays = [sid] + [np.concatenate([f[c].to_numpy(dtype=np.float64) for f in frames]) for c in EXTRAS]
    _stage(cur, "live_fill", EXTRAS, ts, arrays)
    sets = ", ".join(f"{c} = COALESCE(m.{c}, f.{c})" for c in EXTRAS)
    fills = " OR ".join(f"(m.{c} IS NULL AND f.{c} IS NOT NULL)" for c in EXTRAS)
    cur.execute(
        f"""
        UPDATE market_data_v2 m SET {sets}, revision = m.revision + 1, features_revision = NULL, updated_at = now()
        FROM live_fill f
        WHERE m.symbol_id = f.sid::bigint AND m.timeframe = %s AND m.ts = f.ts AND ({fills})
        """,  # noqa: S608 - column names are constants of this module
        [timeframe],
    )


def _compute_features(cur, ids: list[int], *, timeframe: str, seconds: int, calendar: MarketCalendar) -> list[Tail]:
    """Features, quality score and flags of each series' stale tail (features_compute's
    incremental rules: from the first stale row on, with the context the longest window and
    the funding percentile need before it), read in one query and written in one."""
    bars_per_day = candle_quality.bars_per_day(calendar, seconds)
    lookback = lookback_bars(timeframe_seconds=seconds, bars_per_day=bars_per_day)
    bounds_by_sid = _context_bounds(cur, ids, timeframe, lookback)
    if not bounds_by_sid:
        return []
    cur.execute(
        f"""
        SELECT m.symbol_id, m.ts, {", ".join(f"m.{c}" for c in (*INPUT_COLUMNS, *RECURSIVE))}
        FROM unnest(%s::int[], %s::timestamptz[]) AS c(sid, context_from)
        JOIN market_data_v2 m ON m.symbol_id = c.sid AND m.timeframe = %s AND m.ts >= c.context_from
        ORDER BY m.symbol_id, m.ts
        """,  # noqa: S608 - column names are constants
        [list(bounds_by_sid), [b[1] for b in bounds_by_sid.values()], timeframe],
    )
    columns = ["symbol_id", "ts", *INPUT_COLUMNS, *RECURSIVE]
    everything = pd.DataFrame(cur.fetchall(), columns=columns)
    if everything.empty:
        return []
    # Every series at once (feature_compute's `compute_many`, the code of the other paths).
    ts_all = pd.DatetimeIndex(pd.to_datetime(everything["ts"], utc=True))
    sids = everything["symbol_id"].to_numpy(dtype=np.int64)
    series = np.unique(sids)
    bounds = np.searchsorted(sids, np.append(series, series[-1] + 1))
    meta = [bounds_by_sid[sid] for sid in series.tolist()]  # (dirty, context_from, prev, row_offset)
    dirty = pd.DatetimeIndex(pd.to_datetime([m[0] for m in meta], utc=True)).as_unit("s").asi8
    prev = pd.DatetimeIndex(pd.to_datetime([m[2] for m in meta], utc=True)).as_unit("s").asi8
    rows = ManyRows.build(
        ts_seconds=ts_all.as_unit("s").asi8,
        data={c: everything[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in (*INPUT_COLUMNS, *RECURSIVE)},
        bounds=bounds,
        dirty_seconds=dirty,
        row_offset=np.array([m[3] for m in meta], dtype=np.int64),
        prev_seconds=np.where(prev == pd.NaT.value, candle_quality.NO_PREV, prev),
    )
    key = SeriesKey(None, timeframe, seconds, calendar)
    values = compute_many([key] * len(series), rows)
    emitted = rows.emitted()
    lengths = np.diff(bounds)
    first_at = bounds[:-1] + rows.emit_from
    tails = [
        Tail(
            sid,
            incremental=emit_from > 0,
            rows_read=read,
            rows_written=read - emit_from,
            first_ts=ts_all[first].to_pydatetime(),
            last_ts=ts_all[end - 1].to_pydatetime(),
        )
        for sid, read, emit_from, first, end in zip(
            series.tolist(),
            lengths.tolist(),
            rows.emit_from.tolist(),
            first_at.tolist(),
            bounds[1:].tolist(),
            strict=True,
        )
    ]
    ts = ts_all[emitted].as_unit("us")
    arrays = [sids[emitted].astype(np.float64)] + [values[c] for c in WRITE_COLUMNS]
    _stage(cur, "live_features", WRITE_COLUMNS, ts, arrays)
    sets = ", ".join(f"{c} = s.{c}" for c in FEATURE_COLUMNS)
    # computed_at is the write's own time (not the transaction's start): the features are
    # visible at the commit that follows.
    cur.execute(
        f"""
        UPDATE market_data_v2 m SET {sets}, quality_score = s.quality_score,
            quality_flags = s.quality_flags::int, features_revision = m.revision, computed_at = clock_timestamp()
        FROM live_features s
        WHERE m.symbol_id = s.sid::bigint AND m.timeframe = %s AND m.ts = s.ts
        """,  # noqa: S608 - column names are constants
        [timeframe],
    )
    return tails


def _context_bounds(
    cur, ids: list[int], timeframe: str, lookback: int
) -> dict[int, tuple[datetime, datetime, datetime | None, int]]:
    """For each series with a stale row: (first stale ts, first row to read, the row before
    that, rows of the series before it), in one query (feature_compute's `_context_from`)."""
    cur.execute(
        """
        WITH dirty AS (
            SELECT symbol_id AS sid, min(ts) AS dirty FROM market_data_v2
            WHERE symbol_id = ANY(%(ids)s) AND timeframe = %(tf)s AND features_revision IS DISTINCT FROM revision
            GROUP BY symbol_id
        ), edges AS (
            SELECT d.sid, d.dirty,
                (SELECT ts FROM market_data_v2 WHERE symbol_id = d.sid AND timeframe = %(tf)s AND ts < d.dirty
                 ORDER BY ts DESC OFFSET %(lookback)s LIMIT 1) AS by_rows,
                (SELECT ts FROM market_data_v2 WHERE symbol_id = d.sid AND timeframe = %(tf)s AND ts < d.dirty
                 AND funding_rate IS NOT NULL ORDER BY ts DESC OFFSET %(funding)s LIMIT 1) AS by_funding,
                (SELECT min(ts) FROM market_data_v2 WHERE symbol_id = d.sid AND timeframe = %(tf)s) AS earliest,
                EXISTS (SELECT 1 FROM market_data_v2 WHERE symbol_id = d.sid AND timeframe = %(tf)s AND ts < d.dirty
                        AND funding_rate IS NOT NULL) AS any_funding
            FROM dirty d
        ), context AS (
            SELECT sid, dirty,
                CASE WHEN by_rows IS NULL THEN earliest
                     WHEN by_funding IS NOT NULL THEN LEAST(by_rows, by_funding)
                     WHEN any_funding THEN earliest
                     ELSE by_rows END AS context_from
            FROM edges
        )
        SELECT c.sid, c.dirty, c.context_from,
            (SELECT max(ts) FROM market_data_v2 WHERE symbol_id = c.sid AND timeframe = %(tf)s
             AND ts < c.context_from),
            (SELECT count(*) FROM market_data_v2 WHERE symbol_id = c.sid AND timeframe = %(tf)s
             AND ts < c.context_from)
        FROM context c ORDER BY c.sid
        """,
        {"ids": ids, "tf": timeframe, "lookback": lookback, "funding": FUNDING_WINDOW - 2},
    )
    return {int(r[0]): (r[1], r[2], r[3], int(r[4])) for r in cur.fetchall()}


def live_summaries(
    symbols: list[Symbol],
    tails: list[Tail],
    *,
    timeframe: str,
    seconds: int,
    calendar: MarketCalendar,
    seconds_spent: float,
) -> None:
    """Daily quality metrics from each recomputed tail's first day on, the status rows and the
    compute log (what features_compute does after its write), for all the series at once. The
    poller calls it once its batches' features are stored, so that they wait for none of this."""
    if not symbols:
        return
    started = time.perf_counter() - seconds_spent
    ids = [s.pk for s in symbols]
    with transaction.atomic(), connection.cursor() as cur:
        xact_locks(FEATURE_SERIES, [f"{i}:{timeframe}" for i in ids])  # the chunked feature step's keys
        if tails:
            _refresh_metrics(cur, tails, timeframe=timeframe, seconds=seconds, calendar=calendar)
        _refresh_status(cur, ids, timeframe)
        duration = (time.perf_counter() - started) * 1000 / max(1, len(symbols))
        by_id = {t.symbol_id: t for t in tails}
        EnrichmentComputeLog.objects.bulk_create([_log_row(s, timeframe, by_id.get(s.pk), duration) for s in symbols])


def _log_row(symbol: Symbol, timeframe: str, tail: Tail | None, duration_ms: float) -> EnrichmentComputeLog:
    mode = EnrichmentComputeLog.Mode
    if tail is None:
        return EnrichmentComputeLog(symbol=symbol, timeframe=timeframe, mode=mode.NOTHING, duration_ms=duration_ms)
    return EnrichmentComputeLog(
        symbol=symbol,
        timeframe=timeframe,
        mode=mode.INCREMENTAL if tail.incremental else mode.FULL,
        rows_read=tail.rows_read,
        rows_written=tail.rows_written,
        first_ts=tail.first_ts,
        last_ts=tail.last_ts,
        duration_ms=duration_ms,
    )


def _refresh_metrics(cur, tails: list[Tail], *, timeframe: str, seconds: int, calendar: MarketCalendar) -> None:
    """data_quality_metrics for every day from each tail's first day on (feature_compute's
    `_refresh_metrics`) of all the series at once: one read, one pass of
    `candle_quality.daily_metrics_many` (equal to `daily_metrics` of each), one upsert."""
    zone = "UTC" if seconds >= candle_quality.DAY else calendar.timezone
    starts: dict[int, datetime] = {}
    for t in tails:
        start = pd.Timestamp(t.first_ts).tz_convert(zone).normalize().to_pydatetime()
        starts[t.symbol_id] = min(start, starts.get(t.symbol_id, start))
    sids = sorted(starts)
    cur.execute(
        "CREATE TEMP TABLE IF NOT EXISTS live_days (k int8 PRIMARY KEY, sid int8 NOT NULL, tf text NOT NULL,"
        " day_start timestamptz NOT NULL) ON COMMIT DROP"
    )
    cur.execute("TRUNCATE live_days")
    cur.execute(
        "INSERT INTO live_days SELECT u.n - 1, u.sid, %s, u.day_start"
        " FROM unnest(%s::int8[], %s::timestamptz[]) WITH ORDINALITY AS u(sid, day_start, n)",
        [timeframe, sids, [starts[i] for i in sids]],
    )
    cur.execute(
        "SELECT EXISTS (SELECT 1 FROM market_data_v2 v WHERE v.symbol_id = d.sid AND v.timeframe = d.tf"
        " AND v.ts < d.day_start) FROM live_days d ORDER BY d.k"
    )
    earlier = np.array([row[0] for row in cur.fetchall()], dtype=bool)
    read = packed_out(
        cur,
        "SELECT d.k AS k, v.ts AS ts, COALESCE(v.quality_flags, 0)::int8 AS flags,"
        " COALESCE(v.quality_score, 'NaN') AS score"
        " FROM live_days d JOIN market_data_v2 v ON v.symbol_id = d.sid AND v.timeframe = d.tf"
        " AND v.ts >= d.day_start",
        {"k": "i", "ts": "t", "flags": "i", "score": "f"},
    )
    bounds = np.searchsorted(read["k"], np.arange(len(sids) + 1))
    members = np.flatnonzero(np.diff(bounds) > 0)  # a series with no rows has no days
    if not len(members):
        return
    rows = np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in members])
    lengths = bounds[members + 1] - bounds[members]
    metrics = candle_quality.daily_metrics_many(
        ts_seconds=read["ts"][rows] // 1_000_000,
        flags=read["flags"][rows],
        score=read["score"][rows],
        bounds=np.concatenate([[0], np.cumsum(lengths)]),
        from_day_start=earlier[members],
        calendar=calendar,
        timeframe_seconds=seconds,
    )
    sid = np.array(sids, dtype=np.int64)[members][metrics.pop("series")].astype(np.float64)
    cols = list(candle_quality.DAILY_COLUMNS)
    day = metrics["day"].astype("datetime64[D]").astype("datetime64[us]")
    _stage(cur, "live_metrics", tuple(cols[1:]), day, [sid] + [metrics[c].astype(np.float64) for c in cols[1:]])
    casts = ", ".join(f"s.{c}::{t.removesuffix('[]')}" for c, t in zip(cols[1:], DAILY_TYPES[1:], strict=True))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols[1:])
    cur.execute(
        f"""
        INSERT INTO data_quality_metrics (symbol_id, timeframe, {", ".join(cols)}, computed_at)
        SELECT s.sid::bigint, %s, (s.ts AT TIME ZONE 'UTC')::date, {casts}, now()
        FROM live_metrics s ORDER BY s.sid, s.ts
        ON CONFLICT (symbol_id, timeframe, day) DO UPDATE SET {updates}, computed_at = now()
        """,  # noqa: S608 - column names are constants
        [timeframe],
    )


def _refresh_status(cur, ids: list[int], timeframe: str) -> None:
    """enrichment_status of each series (feature_compute's `_refresh_status`), one statement."""
    cur.execute(
        """
        INSERT INTO enrichment_status (symbol_id, timeframe, state, rows, first_ts, last_ts, last_computed_at,
                                       avg_quality_score, quality_sum, quality_n, completeness, complete_bars,
                                       expected_bars, last_error, updated_at)
        SELECT a.symbol_id, %(tf)s, a.state, a.n, a.first_ts, a.last_ts, a.computed, a.quality, a.quality_sum,
               a.quality_n,
               q.complete::float8 / NULLIF(q.expected, 0), q.complete, q.expected, '', now()
        FROM (
            SELECT v.symbol_id,
                   CASE WHEN count(*) FILTER (WHERE features_revision IS DISTINCT FROM revision) > 0
                        THEN 'pending' ELSE 'ok' END AS state,
                   count(*) AS n, min(ts) AS first_ts, max(ts) AS last_ts, max(computed_at) AS computed,
                   avg(quality_score) AS quality, sum(quality_score::numeric) AS quality_sum,
                   count(quality_score) AS quality_n
            FROM market_data_v2 v WHERE v.symbol_id = ANY(%(ids)s) AND v.timeframe = %(tf)s
            GROUP BY v.symbol_id
        ) a
        CROSS JOIN LATERAL (
            SELECT sum(LEAST(q.actual_bars, q.expected_bars)) AS complete, sum(q.expected_bars) AS expected
            FROM data_quality_metrics q WHERE q.symbol_id = a.symbol_id AND q.timeframe = %(tf)s
        ) q
        ON CONFLICT (symbol_id, timeframe) DO UPDATE SET
            state = EXCLUDED.state, rows = EXCLUDED.rows, first_ts = EXCLUDED.first_ts, last_ts = EXCLUDED.last_ts,
            last_computed_at = EXCLUDED.last_computed_at, avg_quality_score = EXCLUDED.avg_quality_score,
            quality_sum = EXCLUDED.quality_sum, quality_n = EXCLUDED.quality_n,
            completeness = EXCLUDED.completeness, complete_bars = EXCLUDED.complete_bars,
            expected_bars = EXCLUDED.expected_bars, last_error = EXCLUDED.last_error, updated_at = now()
        """,
        {"tf": timeframe, "ids": ids},
    )


def live_series_record(
    rows: list[tuple[Symbol, datetime, str, pd.DataFrame | None, datetime | None]], *, timeframe: str, seconds: int
) -> None:
    """Each polled series' live row, one statement: when it was polled, its error and, when bars
    were stored, the newest one, when its features were stored and the lag from its close.
    `rows`: (symbol, polled_at, error, the stored frame or None, stored_at or None)."""
    if not rows:
        return
    ids, polled, errors, newest, stored, lags, counts = [], [], [], [], [], [], []
    for symbol, polled_at, error, frame, stored_at in rows:
        ids.append(symbol.pk)
        polled.append(polled_at)
        errors.append(error)
        has_bars = frame is not None and not frame.empty and stored_at is not None
        last = frame["ts"].iloc[-1].to_pydatetime() if has_bars else None
        newest.append(last)
        stored.append(stored_at if has_bars else None)
        lags.append((stored_at - (last + timedelta(seconds=seconds))).total_seconds() if has_bars else None)
        counts.append(len(frame) if has_bars else 0)
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO live_series (symbol_id, timeframe, is_enabled, last_bar_ts, last_stored_at, last_lag_seconds,
                                     last_polled_at, bars_stored, last_error)
            SELECT u.sid, %s, true, u.newest, u.stored, u.lag, u.polled, u.bars, u.error
            FROM unnest(%s::int[], %s::timestamptz[], %s::timestamptz[], %s::float8[], %s::timestamptz[],
                        %s::bigint[], %s::text[]) AS u(sid, newest, stored, lag, polled, bars, error)
            ORDER BY u.sid
            ON CONFLICT (symbol_id, timeframe) DO UPDATE SET
                last_polled_at = EXCLUDED.last_polled_at, last_error = EXCLUDED.last_error,
                last_bar_ts = COALESCE(EXCLUDED.last_bar_ts, live_series.last_bar_ts),
                last_stored_at = COALESCE(EXCLUDED.last_stored_at, live_series.last_stored_at),
                last_lag_seconds = CASE WHEN EXCLUDED.last_bar_ts IS NULL THEN live_series.last_lag_seconds
                                        ELSE EXCLUDED.last_lag_seconds END,
                bars_stored = live_series.bars_stored + EXCLUDED.bars_stored
            """,
            [timeframe, ids, newest, stored, lags, polled, counts, errors],
        )
