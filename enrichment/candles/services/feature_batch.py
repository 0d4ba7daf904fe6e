"""The feature step over many series at once (DESIGN.md, "Scale: cost per item, not per row").

`series_scan` finds the stale series of the whole scope with one query. Then, per chunk of
many series, in one transaction that holds every series' lock (`FEATURE_SERIES`, the lock the
live poller and backfills take for one series):

0. new:     the series without a market_data_v2 row yet go the from-scratch path
            (`feature_scratch`: one read from market_data, the kernels, one COPY straight
            into market_data_v2 and one into data_quality_metrics); steps 1-4 skip them;
1. copy:    their new and changed candles from market_data into a staging table (one
            INSERT ... SELECT), the amendments of restated bars and the upsert into
            market_data_v2 (one statement each, `candle_upsert.stage_*`);
2. read:    where each series' stale tail starts and the context its longest window needs:
            a few index probes per series (`feature_probe`: its first stale row, its ends, any
            funding) and, where its status row can be trusted, its row count from there (else
            one pass over its stored rows); the general query for the series other than
            those whose new bars follow every stored one with nothing stale and no funding
            (the hourly case, whose context is read from its newest row back: no probe more);
            then all those rows in one query, packed into one bytea per column and series
            (`feature_scratch.packed_out`);
3. compute: the kernels over all series of the one array at once (`feature_compute.compute_many`,
            the very code of the per-series path, so the bits are the same);
4. write:   one binary COPY of all features into a temporary table and one UPDATE ... FROM;
            the daily quality metrics likewise (from the rows in hand, else one read; one
            COPY, one upsert); the compute log
            with one statement; the status rows with one statement for the series that only got
            bars after their stored ones (from the probe and their new rows: no recount) and one
            that recounts the others (`_refresh_status`).

A chunk that raises is rolled back and its series are run one by one through the per-series
path, so a failing series is recorded with its error and the others go on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import numpy as np
import pandas as pd
from django.db import connection, transaction

from enrichment.candles import candle_quality
from enrichment.candles.feature_list import FUNDING_WINDOW, INPUT_COLUMNS, RECURSIVE, lookback_bars
from enrichment.candles.local_source import MARKET_DATA_SOURCE
from enrichment.candles.models import CANDLE_COLUMNS, EnrichmentComputeLog, FeatureRun
from enrichment.candles.services.candle_upsert import changed_condition, copy_into, stage_amendments, stage_upsert
from enrichment.candles.services.feature_compute import (
    FEATURE_COLUMNS,
    WRITE_COLUMNS,
    ManyRows,
    SeriesKey,
    compute_many,
    metrics_day_start,
)
from enrichment.candles.services.feature_scan import ScannedSeries
from enrichment.candles.services.feature_scratch import (
    SOURCE_COLUMNS,
    ScratchResult,
    ScratchStatus,
    Tail,
    metrics_upsert,
    packed_out,
    scratch_run,
    scratch_series,
)
from enrichment.candles.services.series_refs import timeframe_parse
from etl.calendars import MarketCalendar, market_calendar
from etl.locks import FEATURE_SERIES, xact_locks
from etl.models import Market, Symbol
from etl.services.partitions import partitions_ensure_from

# A chunk: at most this many series, and about this many candle rows read. Its fixed cost is
# about twenty statements; its memory about 2.5 kB a row (the read, the features, the write
# buffers: 789 MB peak RSS at 1,000 series of 250 daily bars in bench_scale), so the peak stays
# well under 1 GB whatever the number of series.
CHUNK_SERIES = 500
CHUNK_ROWS = 250_000
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in microseconds since 1970
_US = 1_000_000
# Timestamps sent as microseconds since 1970 (exact, as an interval): cheaper than datetimes.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def chunks(series: list[ScannedSeries]):
    """Consecutive groups of at most CHUNK_SERIES series and about CHUNK_ROWS rows (a series
    larger than the budget is a chunk of its own)."""
    max_series, max_rows = CHUNK_SERIES, CHUNK_ROWS
    chunk: list[ScannedSeries] = []
    rows = 0
    for item in series:
        if chunk and (len(chunk) >= max_series or rows + item.estimate > max_rows):
            yield chunk
            chunk, rows = [], 0
        chunk.append(item)
        rows += item.estimate
    if chunk:
        yield chunk


_TEMP_TABLES = (
    "feature_chunk",
    "feature_stage",
    "feature_probe",
    "feature_tails",
    "feature_out",
    "feature_days",
    "feature_metrics",
    "feature_appended",
    "feature_completeness",
)


@dataclass(slots=True)
class ChunkResult:
    inserted: int = 0
    updated: int = 0
    amendments: int = 0
    rows_computed: int = 0


class SymbolRef(NamedTuple):
    """What a chunk needs of a symbol: its id and market (`SeriesKey.symbol`). Loading the whole
    Symbol rows cost 0.08 ms a series (5,000 model instances an hourly run at 5,000 symbols, each
    with its market set on it), for two integers; the per-series fallback loads its own."""

    pk: int
    market_id: int


@dataclass(slots=True)
class SeriesContext:
    """What the computation needs about the symbols and markets of a run: the symbols' ids and
    markets once per chunk, each market (with its sessions and closures) and its calendar once per
    run, and each market's lookback per timeframe. (Prefetching every chunk's markets again cost
    0.15 s a chunk: thousands of closure rows.)"""

    calendars: dict[int, MarketCalendar] = field(default_factory=dict)
    markets: dict[int, Market] = field(default_factory=dict)
    lookbacks: dict[tuple[int, int], int] = field(default_factory=dict)
    market_of: dict[int, int] = field(default_factory=dict)

    def symbols_load(self, series: list[ScannedSeries]) -> None:
        """The market of every symbol of a run, one query before its chunks start (not one a
        chunk: 200 index scans of 500 symbols an hourly run at 100,000 symbols, 1.6 s, most of
        it symbol pages read one by one). A symbol the chunk does not find here (deleted since)
        is looked up again by `keys`."""
        ids = sorted({s.symbol_id for s in series})
        with connection.cursor() as cur:
            cur.execute("SELECT id, market_id FROM symbols WHERE id = ANY(%s::int[])", [ids])
            self.market_of.update(cur.fetchall())

    def keys(self, chunk: list[ScannedSeries]) -> list[SeriesKey]:
        known = self.market_of
        if all(s.symbol_id in known for s in chunk):
            market_of = known
        else:
            market_of = dict(Symbol.objects.filter(pk__in=[s.symbol_id for s in chunk]).values_list("pk", "market_id"))
        unknown = set(market_of.values()) - self.markets.keys()
        for market in Market.objects.filter(pk__in=unknown).prefetch_related("sessions", "closures"):
            # The calendar first: a chunk on the other worker thread (`feature_workers`) that
            # sees the market known finds its calendar.
            self.calendars[market.pk] = market_calendar(market)
            self.markets[market.pk] = market
        seconds = {tf: timeframe_parse(tf) for tf in {s.timeframe for s in chunk}}
        out = []
        for item in chunk:
            market_id = market_of[item.symbol_id]
            symbol = SymbolRef(item.symbol_id, market_id)
            out.append(SeriesKey(symbol, item.timeframe, seconds[item.timeframe], self.calendars[market_id]))
        return out

    def lookback(self, key: SeriesKey) -> int:
        """The rows of context the longest window of `key`'s series needs (per market and timeframe)."""
        at = (key.symbol.market_id, key.seconds)
        found = self.lookbacks.get(at)
        if found is None:
            bars_per_day = candle_quality.bars_per_day(key.calendar, key.seconds)
            found = self.lookbacks[at] = lookback_bars(timeframe_seconds=key.seconds, bars_per_day=bars_per_day)
        return found


def chunk_run(
    chunk: list[ScannedSeries],
    *,
    full: bool,
    run: FeatureRun | None,
    run_ref: str,
    context: SeriesContext,
) -> ChunkResult:
    """Copy, compute and record one chunk of series in one transaction (all or nothing)."""
    started = time.perf_counter()
    keys = context.keys(chunk)
    result = ChunkResult()
    with transaction.atomic(), connection.cursor() as cur:
        _lock(keys)
        # ON COMMIT DROP tables outlive a chunk that is a savepoint in a longer transaction.
        cur.execute(f"DROP TABLE IF EXISTS {', '.join(_TEMP_TABLES)}")
        _chunk_table(cur, chunk, keys, context)
        scratch = scratch_series(cur)
        done = scratch_run(cur, keys, scratch) if scratch else ScratchResult(0, {})
        saved = _settings(cur)
        new, tails, hand = 0, {}, None
        if len(scratch) < len(keys):  # a chunk of new series only has nothing to stage or re-read
            new, result.updated, result.amendments = _copy_candles(cur, run_ref=run_ref)
            tails, hand = _compute(cur, keys, full=full)
        result.inserted = done.inserted + (_insert_new(cur) if new else 0)
        _refresh_metrics(cur, keys, tails, hand)
        tails.update(done.tails)
        result.rows_computed = sum(t.rows_written for t in tails.values())
        probed = not full and len(scratch) < len(keys)
        _refresh_status(
            cur, probed=probed, inserted=result.inserted - done.inserted, size=len(chunk), known=done.status
        )
        duration = (time.perf_counter() - started) * 1000 / len(chunk)
        _log(cur, keys, tails, run=run, full=full, duration_ms=duration)
        _settings_restore(cur, saved)
    return result


# --- the steps of a chunk ---------------------------------------------------------------


# The chunk's work_mem, at least: the read of the tails with their context (`packed_out`'s
# aggregate then of one bytea per series and month) held 3.7 MB for 500 series of 52 rows and spilled
# to disk in five batches under the default 4 MB (half of the statement's 46 ms a chunk).
CHUNK_WORK_MEM = "32MB"


def _settings(cur) -> tuple[str, str]:
    """JIT off and work_mem at least CHUNK_WORK_MEM for the chunk's statements; returns the
    settings to put back (`_settings_restore`). Over 500 series their per-series index loops are
    costed above `jit_above_cost`, so PostgreSQL compiled each of them (25-30 ms apiece, four of
    them a chunk: 1 s of a 5,000-series hourly run) for plans that run in 100-200 ms.
    Transaction-local and put back at the chunk's end: inside a caller's transaction the chunk is
    a savepoint, whose rollback undoes them too."""
    cur.execute(
        "SELECT current_setting('jit'), current_setting('work_mem'), set_config('jit', 'off', true),"
        " CASE WHEN pg_size_bytes(current_setting('work_mem')) < pg_size_bytes(%s)"
        " THEN set_config('work_mem', %s, true) END",
        [CHUNK_WORK_MEM, CHUNK_WORK_MEM],
    )
    jit, work_mem, *_ = cur.fetchone()
    return jit, work_mem


def _settings_restore(cur, saved: tuple[str, str]) -> None:
    cur.execute("SELECT set_config('jit', %s, true), set_config('work_mem', %s, true)", list(saved))


def _lock(keys: list[SeriesKey]) -> None:
    """Every series' lock, in key order (`xact_locks`): two chunked runs never wait on each other
    in a cycle, and the live poller and a backfill hold one series' lock at a time."""
    xact_locks(FEATURE_SERIES, [f"{k.symbol.pk}:{k.timeframe}" for k in keys])


def _chunk_table(cur, chunk: list[ScannedSeries], keys: list[SeriesKey], context: SeriesContext) -> None:
    """feature_chunk: the chunk's series, numbered k = 0.. in chunk order, with what to copy
    (`since`), the watermark to record and the rows of context each needs."""
    lookbacks = [context.lookback(key) for key in keys]
    cur.execute(
        """
        CREATE TEMP TABLE feature_chunk (k int8 PRIMARY KEY, symbol_id int NOT NULL, timeframe text NOT NULL,
                                         since timestamptz, watermark timestamptz, lookback int NOT NULL,
                                         scratch bool NOT NULL DEFAULT false)
        ON COMMIT DROP
        """
    )
    cur.execute(
        """
        INSERT INTO feature_chunk (k, symbol_id, timeframe, since, watermark, lookback)
        SELECT u.n - 1, u.symbol_id, u.timeframe, 'epoch'::timestamptz + u.since * interval '1 microsecond',
               'epoch'::timestamptz + u.watermark * interval '1 microsecond', u.lookback
        FROM unnest(%s::int[], %s::text[], %s::int8[], %s::int8[], %s::int[])
             WITH ORDINALITY AS u(symbol_id, timeframe, since, watermark, lookback, n)
        """,
        [
            [s.symbol_id for s in chunk],
            [s.timeframe for s in chunk],
            [None if s.since is None else (s.since - _EPOCH) // _ONE_US for s in chunk],
            [(s.watermark - _EPOCH) // _ONE_US for s in chunk],
            lookbacks,
        ],
    )
    cur.execute("ANALYZE feature_chunk")


def _copy_candles(cur, *, run_ref: str) -> tuple[int, int, int]:
    """market_data -> feature_stage for the whole chunk: the candles changed since each series'
    watermark (one per bar: the newest row wins), each marked new or not in market_data_v2.
    Restated bars get their amendment and are rewritten now (revision + 1, features stale); new
    ones wait for their features and are inserted with them (`_write_features`): written once.
    Returns (new, updated, amendments)."""
    select = ", ".join(f"{SOURCE_COLUMNS.get(c, 'NULL::float8')} AS {c}" for c in CANDLE_COLUMNS)
    # Only what is new or differs from the stored bar is kept: re-read candles (the watermark's
    # overlap, a correction that touched updated_at) cost one comparison, no write and no lock.
    cur.execute(
        f"""
        CREATE TEMP TABLE feature_stage ON COMMIT DROP AS
        SELECT x.*, m.ts IS NULL AS is_new
        FROM (
            SELECT DISTINCT ON (c.k, md.ts) c.k, c.symbol_id, c.timeframe, md.ts, {select}
            FROM feature_chunk c
            JOIN market_data md ON md.symbol_id = c.symbol_id AND md.timeframe = c.timeframe
            WHERE NOT c.scratch AND (c.since IS NULL OR md.updated_at > c.since)
            ORDER BY c.k, md.ts, md.id DESC
        ) x
        LEFT JOIN market_data_v2 m ON m.symbol_id = x.symbol_id AND m.timeframe = x.timeframe AND m.ts = x.ts
        WHERE m.ts IS NULL OR {changed_condition("m", "x")}
        """  # noqa: S608 - column expressions are constants of this module
    )
    if not cur.rowcount:
        return 0, 0, 0
    cur.execute("ANALYZE feature_stage")
    cur.execute("SELECT count(*) FILTER (WHERE is_new), count(*) FILTER (WHERE NOT is_new) FROM feature_stage")
    new, old = cur.fetchone()
    partitions_ensure_from(table="market_data_v2", source="feature_stage")
    if not old:
        return new, 0, 0
    amendments = stage_amendments(
        cur, stage="feature_stage", source=MARKET_DATA_SOURCE, run_ref=run_ref, where="NOT s.is_new"
    )
    written = stage_upsert(cur, stage="feature_stage", source=MARKET_DATA_SOURCE, where="NOT s.is_new")
    return new, written.updated, amendments


# `feature_compute._first_stale`, `_context_from` and `_read_context`'s row count for every
# series of the chunk at once, each one read by the primary key's index as the per-series path
# reads it: the first stale row (a stored row whose features are stale, or a new candle), the row
# `lookback` rows before it, the funding observations the percentile needs, then the row before
# the context and the rows before it. New candles are stale, so they are never before the first
# stale row: only the earliest row can be one of them.
#
# First the probe (`_PROBE_SQL`), by index: each series' first stale row (the partial index
# market_data_v2_stale, empty once features are computed), its earliest and latest rows (the
# primary key's ends) and whether funding observations lie before its first new candle (the
# partial index market_data_v2_funding). Then how many rows lie before its first new candle and,
# for its status row (`_refresh_status`), its row count, last computation and quality sum and
# count: from its status row where that row can be trusted, which every writer of market_data_v2
# keeps exact or leaves detectably behind — it is `ok` (every row computed when it was written),
# has the sums, its first and last bar are the series' ends (retention drops the oldest rows, an
# import adds new ones: both move an end), no row is stale (a provider's restated or uncomputed
# bar is; the live poller, whose status refresh comes a transaction later, clears `quality_n` as
# it writes), and the new bars follow every stored one; else (`kept` false)
# from one pass over the series' stored rows, as before. The row count must be exact: the
# window kernels align their blocks on `row_offset % w`.
# The hourly case — new bars after every stored one, nothing stale, no funding — then needs no
# probe more (`_TAILS_FAST_SQL`): the context read (`_read_tails`) takes each such series' newest
# `lookback + 2` rows before its first new candle (and its stored rows after it, where a late bar
# fills a hole) in one descending index scan: the context is the newest `lookback + 1` of them, the
# row before the context the oldest (none: fewer rows than that, and the context starts at the
# first row), and the rows before the context those before the new candle less the
# `lookback + 1` of the context. The other series (restated bars, funding, a full run) take the general query
# (`_TAILS_SQL`).
_SERIES = "v.symbol_id = {t}.symbol_id AND v.timeframe = {t}.timeframe"
_TAILS_DDL = """
CREATE TEMP TABLE feature_tails (k int8 PRIMARY KEY, symbol_id int NOT NULL, timeframe text NOT NULL,
                                 dirty timestamptz NOT NULL, ctx timestamptz, prev timestamptz, row_offset int8,
                                 lookback int, before_new int8, back int)
ON COMMIT DROP
"""
_PROBE_SQL = f"""
CREATE TEMP TABLE feature_probe ON COMMIT DROP AS
WITH n AS MATERIALIZED (
    SELECT k, min(ts) AS first FROM feature_stage WHERE is_new GROUP BY k
), e AS MATERIALIZED (
    SELECT c.k, c.symbol_id, c.timeframe, c.lookback, n.first AS new_first,
           (SELECT v.ts FROM market_data_v2 v WHERE {_SERIES.format(t="c")} AND {{stale}}
            ORDER BY v.ts LIMIT 1) AS stale_first,
           (SELECT v.ts FROM market_data_v2 v WHERE {_SERIES.format(t="c")} ORDER BY v.ts LIMIT 1) AS earliest,
           (SELECT v.ts FROM market_data_v2 v WHERE {_SERIES.format(t="c")} ORDER BY v.ts DESC LIMIT 1) AS latest,
           EXISTS (SELECT FROM market_data_v2 v WHERE {_SERIES.format(t="c")} AND v.funding_rate IS NOT NULL
                   AND v.ts < n.first) AS funded_before_new
    FROM feature_chunk c
    LEFT JOIN n ON n.k = c.k
    WHERE NOT c.scratch
), t AS MATERIALIZED (
    SELECT e.*, es.rows AS kept_rows, es.last_computed_at AS kept_computed, es.quality_sum AS kept_sum,
           es.quality_n AS kept_n
    FROM e
    LEFT JOIN enrichment_status es
        ON es.symbol_id = e.symbol_id AND es.timeframe = e.timeframe AND es.state = 'ok' AND es.rows > 0
       AND es.quality_n IS NOT NULL AND es.first_ts = e.earliest AND es.last_ts = e.latest
       AND e.stale_first IS NULL AND e.new_first > e.latest
)
SELECT t.k, t.symbol_id, t.timeframe, t.lookback, t.new_first, t.stale_first, t.earliest, t.latest,
       t.funded_before_new, t.kept_rows IS NOT NULL AS kept,
       CASE WHEN t.kept_rows IS NULL THEN a.before_new ELSE t.kept_rows END AS before_new,
       CASE WHEN t.kept_rows IS NULL THEN a.stored ELSE t.kept_rows END AS stored,
       CASE WHEN t.kept_rows IS NULL THEN a.computed ELSE t.kept_computed END AS computed,
       CASE WHEN t.kept_rows IS NULL THEN a.quality_sum ELSE t.kept_sum END AS quality_sum,
       CASE WHEN t.kept_rows IS NULL THEN a.quality_n ELSE t.kept_n END AS quality_n,
       t.new_first IS NOT NULL AND (t.stale_first IS NULL OR t.stale_first >= t.new_first)
       AND NOT t.funded_before_new AS fast
FROM t
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE v.ts < t.new_first) AS before_new, count(*) AS stored,
           max(v.computed_at) AS computed, sum(v.quality_score::numeric) AS quality_sum,
           count(v.quality_score) AS quality_n
    FROM market_data_v2 v WHERE {_SERIES.format(t="t")} AND t.kept_rows IS NULL
) a
"""  # noqa: S608 - fixed clauses
_TAILS_FAST_SQL = """
INSERT INTO feature_tails (k, symbol_id, timeframe, dirty, lookback, before_new, back)
SELECT p.k, p.symbol_id, p.timeframe, p.new_first, p.lookback, p.before_new, p.lookback + 2 + p.stored - p.before_new
FROM feature_probe p WHERE p.fast
"""
_TAILS_SQL = f"""
INSERT INTO feature_tails (k, symbol_id, timeframe, dirty, ctx, prev, row_offset)
WITH s AS MATERIALIZED (
    SELECT p.k, p.symbol_id, p.timeframe, p.lookback, p.new_first, least(p.stale_first, p.new_first) AS dirty
    FROM feature_probe p WHERE NOT p.fast
), g AS MATERIALIZED (
    SELECT s.k, s.symbol_id, s.timeframe, s.dirty, s.new_first,
           (SELECT v.ts FROM market_data_v2 v WHERE {_SERIES.format(t="s")} AND v.ts < s.dirty
            ORDER BY v.ts DESC OFFSET s.lookback LIMIT 1) AS by_rows,
           EXISTS (SELECT FROM market_data_v2 v WHERE {_SERIES.format(t="s")} AND v.ts < s.dirty
                   AND v.funding_rate IS NOT NULL) AS funded
    FROM s
    WHERE s.dirty IS NOT NULL
), h AS MATERIALIZED (
    SELECT g.k, g.symbol_id, g.timeframe, g.dirty,
           CASE WHEN g.by_rows IS NULL OR (g.funded AND by_funding IS NULL)
                THEN least((SELECT min(v.ts) FROM market_data_v2 v WHERE {_SERIES.format(t="g")}), g.new_first)
                WHEN g.funded THEN least(g.by_rows, by_funding)
                ELSE g.by_rows END AS ctx
    FROM g
    CROSS JOIN LATERAL (
        SELECT CASE WHEN g.funded THEN (
            SELECT v.ts FROM market_data_v2 v WHERE {_SERIES.format(t="g")} AND v.ts < g.dirty
            AND v.funding_rate IS NOT NULL ORDER BY v.ts DESC OFFSET {{funding_offset}} LIMIT 1) END AS by_funding
    ) f
)
SELECT h.k, h.symbol_id, h.timeframe, h.dirty, h.ctx,
       (SELECT max(v.ts) FROM market_data_v2 v WHERE {_SERIES.format(t="h")} AND v.ts < h.ctx) AS prev,
       (SELECT count(*) FROM market_data_v2 v WHERE {_SERIES.format(t="h")} AND v.ts < h.ctx) AS row_offset
FROM h
"""  # noqa: S608 - fixed clauses


def _tails(cur, *, full: bool) -> None:
    """feature_tails: where each series of the chunk has to be recomputed from (`dirty`), the
    first row of its context (`ctx`), the row before that and how many rows lie before it."""
    stale = "true" if full else "v.features_revision IS DISTINCT FROM v.revision"
    cur.execute(_TAILS_DDL)
    cur.execute(_PROBE_SQL.format(stale=stale))
    cur.execute("SELECT count(*) FILTER (WHERE fast), count(*) FILTER (WHERE NOT fast) FROM feature_probe")
    fast, other = cur.fetchone()
    if fast:
        cur.execute(_TAILS_FAST_SQL)
    if other:
        cur.execute(_TAILS_SQL.format(funding_offset=FUNDING_WINDOW - 2))


@dataclass(frozen=True, slots=True)
class InHand:
    """The rows `_compute` read and wrote, per series (`series`: its k, sorted; rows
    bounds[i]:bounds[i+1], by ts): the quality flags and scores it wrote from emit_from[i] on,
    and how many stored rows lie before the first one read (row_offset)."""

    series: np.ndarray
    bounds: np.ndarray
    emit_from: np.ndarray
    row_offset: np.ndarray
    ts_us: np.ndarray
    flags: np.ndarray  # the rows' written quality_flags, where emitted (0 elsewhere)
    score: np.ndarray  # their written quality_score, where emitted (NaN elsewhere)


class _Read(NamedTuple):
    ks: np.ndarray
    ts_us: np.ndarray
    arrays: dict[str, np.ndarray]
    bounds: np.ndarray
    meta: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # series, dirty, prev, row_offset


def _read_tails(cur) -> _Read | None:
    """The chunk's tails with their context (feature_tails), in one read; None for none."""
    # Per series: the first stale ts and the row before the context (NO_PREV: none), in whole
    # seconds since 1970 (floored, as the kernels take them), and the rows before the context:
    # integers, not 1,000 timestamps a chunk parsed and converted one by one.
    cur.execute(
        "SELECT k, floor(extract(epoch FROM dirty))::int8, coalesce(floor(extract(epoch FROM prev))::int8, %s),"
        " coalesce(row_offset, 0), coalesce(lookback, 0), coalesce(before_new, 0), coalesce(back, 0)"
        " FROM feature_tails ORDER BY k",
        [int(candle_quality.NO_PREV)],
    )
    meta = np.array(cur.fetchall(), dtype=np.int64).reshape(-1, 7)
    if not len(meta):
        return None
    columns = (*INPUT_COLUMNS, *RECURSIVE)
    fields = {"k": "i", "ts": "t", **dict.fromkeys(columns, "f")}
    stored = ", ".join(f"COALESCE(v.{c}, 'NaN') AS {c}" for c in columns)
    staged = ", ".join("'NaN'::float8" if c in RECURSIVE else f"COALESCE(s.{c}, 'NaN')" for c in columns)
    read = packed_out(
        cur,
        f"""
        SELECT * FROM (
            SELECT t.k, v.ts, {stored} FROM feature_tails t JOIN market_data_v2 v
                ON v.symbol_id = t.symbol_id AND v.timeframe = t.timeframe AND v.ts >= t.ctx
            WHERE t.back IS NULL
            UNION ALL
            SELECT t.k, b.* FROM feature_tails t CROSS JOIN LATERAL (
                SELECT v.ts, {stored} FROM market_data_v2 v
                WHERE v.symbol_id = t.symbol_id AND v.timeframe = t.timeframe ORDER BY v.ts DESC LIMIT t.back
            ) b
            WHERE t.back IS NOT NULL
            UNION ALL
            SELECT t.k, s.ts, {staged} FROM feature_tails t JOIN feature_stage s ON s.k = t.k AND s.is_new
        ) u
        """,  # noqa: S608 - column names are constants
        fields,
    )
    ks, ts_us = read["k"], read["ts"]
    series, dirty, prev, row_offset, lookback, before_new, back = (np.array(m) for m in meta.T)
    bounds = np.searchsorted(ks, np.append(series, series[-1] + 1))
    # The fast series (`back` > 0) were read from their newest row back: their context and, where
    # they have more than `lookback + 1` rows before the first new one, the row before it, which
    # gives `prev` and leaves the read.
    fast = back > 0
    before = fast & (before_new >= lookback + 2)
    dropped = bounds[:-1][before]
    prev[before] = ts_us[dropped] // _US
    row_offset[fast] = np.maximum(before_new[fast] - lookback[fast] - 1, 0)
    if len(dropped):
        keep = np.ones(len(ks), dtype=bool)
        keep[dropped] = False
        read = {c: v[keep] for c, v in read.items()}
        ks, ts_us = read["k"], read["ts"]
        bounds = np.searchsorted(ks, np.append(series, series[-1] + 1))
    arrays = {c: np.ascontiguousarray(read[c]) for c in columns}
    return _Read(ks, ts_us, arrays, bounds, (series, dirty, prev, row_offset))


def _compute(cur, keys: list[SeriesKey], *, full: bool) -> tuple[dict[int, Tail], InHand | None]:
    """Read every stale tail of the chunk with its context in one COPY, compute each series over
    its slice, write all features with one COPY and one UPDATE ... FROM. Returns k -> Tail and
    the rows in hand (`InHand`, for `_refresh_metrics`)."""
    _tails(cur, full=full)
    got = _read_tails(cur)
    if got is None:
        return {}, None
    ks, ts_us, arrays, bounds, (series, dirty, prev, row_offset) = got
    rows = ManyRows.build(
        ts_seconds=ts_us // _US,
        data=arrays,
        bounds=bounds,
        dirty_seconds=dirty,
        row_offset=row_offset,
        prev_seconds=prev,
    )
    features = compute_many([keys[k] for k in series.tolist()], rows)
    emitted = rows.emitted()
    lengths = np.diff(bounds)
    written = lengths - rows.emit_from
    firsts = ts_us[np.minimum(bounds[:-1] + rows.emit_from, max(len(ts_us) - 1, 0))]
    tails = {
        k: Tail(
            rows_read=n_read,
            rows_written=n_written,
            first_us=first if n_written else None,
            last_us=last if n_read else None,
            incremental=not full and emit_from > 0,
        )
        for k, n_read, n_written, first, last, emit_from in zip(
            series.tolist(),
            lengths.tolist(),
            written.tolist(),
            firsts.tolist(),
            ts_us[np.maximum(bounds[1:] - 1, 0)].tolist(),
            rows.emit_from.tolist(),
            strict=True,
        )
    }
    _write_features(cur, ts_us[emitted], ks[emitted].astype(np.float64), features)
    flags, score = np.zeros(len(ts_us), dtype=np.int64), np.full(len(ts_us), np.nan)
    flags[emitted] = features["quality_flags"].astype(np.int64)  # as written: ::int of a whole float8
    score[emitted] = features["quality_score"]
    hand = InHand(series, bounds, rows.emit_from, row_offset, ts_us, flags, score)
    return tails, hand


def _write_features(cur, ts_us: np.ndarray, ks: np.ndarray, out: dict[str, np.ndarray]) -> None:
    cols = ", ".join(f"{c} float8" for c in WRITE_COLUMNS)
    cur.execute(f"CREATE TEMP TABLE feature_out (ts timestamptz NOT NULL, k float8 NOT NULL, {cols}) ON COMMIT DROP")
    copy_into(
        cur,
        table="feature_out",
        columns=["k", *WRITE_COLUMNS],
        ts=ts_us.astype("datetime64[us]"),
        arrays=[ks, *(out[c] for c in WRITE_COLUMNS)],
    )
    cur.execute("ANALYZE feature_out")
    sets = ", ".join(f"{c} = s.{c}" for c in FEATURE_COLUMNS)
    cur.execute(
        f"""
        UPDATE market_data_v2 m SET {sets}, quality_score = s.quality_score,
            quality_flags = s.quality_flags::int, features_revision = m.revision, computed_at = now()
        FROM feature_out s JOIN feature_chunk c ON c.k = s.k::int8
        WHERE m.symbol_id = c.symbol_id AND m.timeframe = c.timeframe AND m.ts = s.ts
        """  # noqa: S608 - column names are constants
    )


def _insert_new(cur) -> int:
    """The chunk's new candles into market_data_v2 with their features: one INSERT, each row
    written once (no insert-then-update, so no dead row version per candle)."""
    candles = ", ".join(CANDLE_COLUMNS)
    staged = ", ".join(f"s.{c}::bigint" if c == "trades" else f"s.{c}" for c in CANDLE_COLUMNS)
    features = ", ".join(FEATURE_COLUMNS)
    computed = ", ".join(f"o.{c}" for c in FEATURE_COLUMNS)
    cur.execute(
        f"""
        INSERT INTO market_data_v2 (symbol_id, timeframe, ts, {candles}, source, revision, {features},
                                    quality_score, quality_flags, features_revision, computed_at, updated_at)
        SELECT s.symbol_id, s.timeframe, s.ts, {staged}, %s, 1, {computed},
               o.quality_score, o.quality_flags::int, 1, now(), now()
        FROM feature_stage s JOIN feature_out o ON o.k::int8 = s.k AND o.ts = s.ts
        WHERE s.is_new
        ORDER BY s.symbol_id, s.timeframe, s.ts
        """,  # noqa: S608 - column names are constants
        [MARKET_DATA_SOURCE],
    )
    return cur.rowcount


def _read_metric_days(cur, to_read: list[tuple[int, int]], earlier: dict[int, bool]) -> dict[str, np.ndarray]:
    """The stored rows of series k from day_us on (`to_read`), in one query; fills `earlier`."""
    cur.execute("CREATE TEMP TABLE feature_days (k int8 PRIMARY KEY, day_start timestamptz NOT NULL) ON COMMIT DROP")
    cur.execute(  # the day starts as microseconds since 1970 (exact, as an interval)
        "INSERT INTO feature_days SELECT u.k, 'epoch'::timestamptz + u.us * interval '1 microsecond'"
        " FROM unnest(%s::int8[], %s::int8[]) AS u(k, us)",
        [[k for k, _ in to_read], [us for _, us in to_read]],
    )
    # Whether the series has a row before that day: its earliest stored row, from the probe (the
    # chunk deletes no row, and its new candles are at or after the first recomputed bar).
    cur.execute(
        "SELECT d.k, p.earliest < d.day_start FROM feature_days d JOIN feature_probe p ON p.k = d.k ORDER BY d.k"
    )
    earlier.update(cur.fetchall())
    return packed_out(
        cur,
        "SELECT d.k, v.ts, COALESCE(v.quality_flags, 0)::int8 AS flags, COALESCE(v.quality_score, 'NaN') AS score"
        " FROM feature_days d JOIN feature_chunk c ON c.k = d.k"
        " JOIN market_data_v2 v ON v.symbol_id = c.symbol_id AND v.timeframe = c.timeframe AND v.ts >= d.day_start",
        {"k": "i", "ts": "t", "flags": "i", "score": "f"},
    )


def _in_hand(hand: InHand | None, k: int, day_us: int) -> tuple[int, int, bool] | None:
    """Series k's rows from `day_us` on as `_compute` wrote them, where it holds them all: those
    rows are all its emitted ones (their flags and scores are what it wrote), and a row before
    them is in hand too or the series has none (the read started at its first row). Returns
    (start, end, whether a row lies before day_us) in the arrays of `hand`, or None (read them)."""
    if hand is None:
        return None
    i = int(np.searchsorted(hand.series, k))
    if i == len(hand.series) or hand.series[i] != k:
        return None
    lo, hi = int(hand.bounds[i]), int(hand.bounds[i + 1])
    start = lo + int(np.searchsorted(hand.ts_us[lo:hi], day_us))
    if start < lo + int(hand.emit_from[i]) or (start == lo and hand.row_offset[i] != 0):
        return None
    return start, hi, start > lo


def _refresh_metrics(cur, keys: list[SeriesKey], tails: dict[int, Tail], hand: InHand | None = None) -> None:
    """data_quality_metrics of every day from each series' first recomputed bar's day on
    (`feature_compute._refresh_metrics` for the whole chunk): one write. The rows of those days
    are taken from what `_compute` wrote where it holds them all (`_in_hand`: daily bars, and
    intraday bars whose new rows start their day); the others are read, in one query."""
    written = [(k, t) for k, t in tails.items() if t.rows_written]
    if not written:
        return
    starts = [metrics_day_start(keys[k], pd.Timestamp(t.first_us, unit="us", tz="UTC")) for k, t in written]
    earlier: dict[int, bool] = {}
    taken: list[np.ndarray] = []
    to_read: list[tuple[int, int]] = []
    for (k, _), start in zip(written, starts, strict=True):
        day_us = start.value // 1000
        found = _in_hand(hand, k, day_us)
        if found is None:
            to_read.append((k, day_us))
        else:
            taken.append(np.arange(found[0], found[1]))
            earlier[k] = found[2]
    parts_read = []
    if taken:
        rows = np.concatenate(taken)
        parts_read.append(
            {
                "k": np.repeat(hand.series, np.diff(hand.bounds))[rows],
                "ts": hand.ts_us[rows],
                "flags": hand.flags[rows],
                "score": hand.score[rows],
            }
        )
    if to_read:
        parts_read.append(_read_metric_days(cur, to_read, earlier))
    read = {c: np.concatenate([p[c] for p in parts_read]) for c in ("k", "ts", "flags", "score")}
    order = np.lexsort((read["ts"], read["k"]))
    read = {c: v[order] for c, v in read.items()}
    # One pass per calendar and timeframe over all its series (`daily_metrics_many`).
    ks = np.array(sorted(earlier), dtype=np.int64)
    bounds = np.searchsorted(read["k"], np.append(ks, ks[-1] + 1))
    groups: dict[tuple[int, int], list[int]] = {}
    for i, k in enumerate(ks.tolist()):
        if bounds[i + 1] > bounds[i]:
            groups.setdefault((keys[k].symbol.market_id, keys[k].seconds), []).append(i)
    parts = []
    for members in groups.values():
        key = keys[int(ks[members[0]])]
        rows = np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in members])
        lengths = np.array([bounds[i + 1] - bounds[i] for i in members])
        metrics = candle_quality.daily_metrics_many(
            ts_seconds=read["ts"][rows] // _US,
            flags=read["flags"][rows],
            score=read["score"][rows],
            bounds=np.concatenate([[0], np.cumsum(lengths)]),
            from_day_start=np.array([earlier[int(ks[i])] for i in members], dtype=bool),
            calendar=key.calendar,
            timeframe_seconds=key.seconds,
        )
        metrics["k"] = ks[members][metrics.pop("series")].astype(np.float64)
        parts.append(metrics)
    if not parts:
        return
    metrics_upsert(cur, {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}, delta=True)


# The status of a series whose chunk only appended bars, from the probe (its status row's kept
# count and sums, or its pass over the stored rows; the chunk did not touch them: nothing was
# stale, so only the new rows were computed) and the new rows, as `_insert_new` wrote them (the
# staged new candles with their features: revision 1 computed, stamped now()).
# Counts and timestamps are exactly a recount's; the quality sum is kept in numeric (each score
# converted as `float8::numeric` converts it, then added exactly: no error builds up from run to
# run), and the mean is that sum over the count, which may differ from a recount's float8 `avg`
# in the last bits (the test allows 1e-12 relative).
_APPENDED_SQL = """
CREATE TEMP TABLE feature_appended ON COMMIT DROP AS
WITH t AS (
    SELECT s.k, count(*) AS n, max(s.ts) AS last_ts, sum(o.quality_score::numeric) AS quality_sum,
           count(o.quality_score) AS quality_n
    FROM feature_stage s JOIN feature_out o ON o.k::int8 = s.k AND o.ts = s.ts
    WHERE s.is_new
    GROUP BY s.k
)
SELECT p.k, p.stored + t.n AS rows, p.earliest AS first_ts, greatest(p.latest, t.last_ts) AS last_ts,
       greatest(p.computed, now()) AS computed, 0 AS pending,
       ((coalesce(p.quality_sum, 0) + coalesce(t.quality_sum, 0)) / NULLIF(p.quality_n + t.quality_n, 0))::float8
           AS quality,
       CASE WHEN p.quality_n + t.quality_n > 0 THEN coalesce(p.quality_sum, 0) + coalesce(t.quality_sum, 0) END
           AS quality_sum,
       p.quality_n + t.quality_n AS quality_n,
       es.complete_bars + d.complete AS complete, es.expected_bars + d.expected AS expected
FROM feature_probe p
JOIN t ON t.k = p.k
JOIN enrichment_status es ON es.symbol_id = p.symbol_id AND es.timeframe = p.timeframe
LEFT JOIN feature_completeness d ON d.k = p.k
WHERE es.state = 'ok' AND p.stored > 0 AND p.stale_first IS NULL AND p.new_first > p.latest
  AND NOT EXISTS (SELECT FROM feature_stage s WHERE s.k = p.k AND NOT s.is_new)
"""
# Both status statements end the same way: a series' row is replaced whole.
_STATUS_UPSERT = """
ON CONFLICT (symbol_id, timeframe) DO UPDATE SET
    state = EXCLUDED.state, rows = EXCLUDED.rows, first_ts = EXCLUDED.first_ts, last_ts = EXCLUDED.last_ts,
    last_computed_at = EXCLUDED.last_computed_at, avg_quality_score = EXCLUDED.avg_quality_score,
    quality_sum = EXCLUDED.quality_sum, quality_n = EXCLUDED.quality_n,
    completeness = EXCLUDED.completeness, complete_bars = EXCLUDED.complete_bars,
    expected_bars = EXCLUDED.expected_bars, last_error = EXCLUDED.last_error,
    source_synced_until = EXCLUDED.source_synced_until, updated_at = now()
"""
_STATUS_SQL = (
    """
INSERT INTO enrichment_status (symbol_id, timeframe, state, rows, first_ts, last_ts, last_computed_at,
                               avg_quality_score, quality_sum, quality_n, completeness, complete_bars,
                               expected_bars, last_error, source_synced_until, updated_at)
SELECT c.symbol_id, c.timeframe, CASE WHEN a.pending > 0 THEN 'pending' ELSE 'ok' END,
       a.n, a.first_ts, a.last_ts, a.computed, a.quality, a.quality_sum, a.quality_n,
       q.complete::float8 / NULLIF(q.expected, 0), q.complete, q.expected, '', c.watermark, now()
FROM feature_chunk c
{rows}
CROSS JOIN LATERAL (
    {completeness}
) q
{where}
ORDER BY c.symbol_id, c.timeframe
"""
    + _STATUS_UPSERT
)
# The completeness sums: summed over every metric day of the series...
_COMPLETENESS_RECOUNT = """
    SELECT sum(LEAST(q.actual_bars, q.expected_bars)) AS complete, sum(q.expected_bars) AS expected
    FROM data_quality_metrics q WHERE q.symbol_id = c.symbol_id AND q.timeframe = c.timeframe
"""
# ... or, for an appended series, its status row's sums plus what the chunk's upsert of its metric
# days changed (`feature_scratch._COMPLETENESS_DELTA`): exact integers, read from a few days
# whatever its history. Summed over every day where the status row does not have them yet (NULL:
# written before they were kept); the recount's scan is skipped otherwise (a one-time filter).
_COMPLETENESS_KEPT = """
    SELECT a.complete, a.expected WHERE a.expected IS NOT NULL
    UNION ALL
    SELECT sum(LEAST(q.actual_bars, q.expected_bars)), sum(q.expected_bars)
    FROM data_quality_metrics q WHERE a.expected IS NULL AND q.symbol_id = c.symbol_id AND q.timeframe = c.timeframe
    HAVING a.expected IS NULL
"""
_STATUS_APPENDED = """
JOIN (SELECT k, pending, rows AS n, first_ts, last_ts, computed, quality, quality_sum, quality_n, complete, expected
      FROM feature_appended) a
    ON a.k = c.k
"""
_STATUS_RECOUNT = """
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE v.features_revision IS DISTINCT FROM v.revision) AS pending,
           count(*) AS n, min(v.ts) AS first_ts, max(v.ts) AS last_ts, max(v.computed_at) AS computed,
           avg(v.quality_score) AS quality, sum(v.quality_score::numeric) AS quality_sum,
           count(v.quality_score) AS quality_n
    FROM market_data_v2 v WHERE v.symbol_id = c.symbol_id AND v.timeframe = c.timeframe
) a
"""


# The status of the new series written by the from-scratch path, from what it computed and wrote
# (`feature_scratch.ScratchStatus`): the rows a recount would read back are the ones it just
# wrote, so nothing is read. Timestamps go as microseconds since 1970 (exact, as an interval).
_STATUS_KNOWN = (
    """
INSERT INTO enrichment_status (symbol_id, timeframe, state, rows, first_ts, last_ts, last_computed_at,
                               avg_quality_score, quality_sum, quality_n, completeness, complete_bars,
                               expected_bars, last_error, source_synced_until, updated_at)
SELECT c.symbol_id, c.timeframe, 'ok', u.n, 'epoch'::timestamptz + u.first_us * interval '1 microsecond',
       'epoch'::timestamptz + u.last_us * interval '1 microsecond', now(), u.quality, u.quality_sum::numeric,
       u.quality_n, u.completeness, u.complete, u.expected, '', c.watermark, now()
FROM unnest(%s::int8[], %s::int8[], %s::int8[], %s::int8[], %s::float8[], %s::float8[], %s::int8[], %s::float8[],
            %s::int8[], %s::int8[])
     AS u(k, n, first_us, last_us, quality, quality_sum, quality_n, completeness, complete, expected)
JOIN feature_chunk c ON c.k = u.k
ORDER BY c.symbol_id, c.timeframe
"""
    + _STATUS_UPSERT
)


def _status_known(cur, known: ScratchStatus) -> list[int]:
    """The status rows of `known` (one statement); returns their k."""

    def nullable(values: np.ndarray) -> list[float | None]:
        return [None if np.isnan(x) else float(x) for x in values.tolist()]

    ks = known.k.tolist()
    cur.execute(
        _STATUS_KNOWN,
        [
            ks,
            known.rows.tolist(),
            known.first_us.tolist(),
            known.last_us.tolist(),
            nullable(known.quality),
            [x if n else None for x, n in zip(known.quality_sum.tolist(), known.quality_n.tolist(), strict=True)],
            known.quality_n.tolist(),
            nullable(known.completeness),
            known.complete.tolist(),
            known.expected.tolist(),
        ],
    )
    return ks


def _refresh_status(cur, *, probed: bool, inserted: int, size: int, known: ScratchStatus | None = None) -> int:
    """`feature_compute._refresh_status` for every series of the chunk, with its watermark.
    A series that was ok and got only bars after its stored ones (the hourly case) is updated
    from the probe and its new rows (`_APPENDED_SQL`); the others (restated or pending bars, a
    late bar between stored ones, a failed or new series, a full run) are recounted from all
    their rows. Either way the row keeps the sums its ratios come from (quality, completeness)
    for the next run. `probed`: an incremental run whose probe ran (not a chunk of new
    series only); `inserted`: new candles written by `_insert_new`. Returns how many series were
    updated without a recount. `known`: the status of the chunk's new series written by the
    from-scratch path (`_STATUS_KNOWN`), not recounted either."""
    skip = _status_known(cur, known) if known is not None and len(known.k) else []
    if not (probed and inserted):
        cur.execute("CREATE TEMP TABLE feature_appended (k int8 PRIMARY KEY) ON COMMIT DROP")
        appended = 0
    else:
        # `_refresh_metrics` made it where the chunk wrote metric days; an appended series always has some.
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS feature_completeness (k int8, complete int8, expected int8) ON COMMIT DROP"
        )
        cur.execute(_APPENDED_SQL)
        appended = cur.rowcount
    if appended:
        cur.execute(_STATUS_SQL.format(rows=_STATUS_APPENDED, completeness=_COMPLETENESS_KEPT, where=""))
    if appended + len(skip) < size:
        where = "WHERE NOT EXISTS (SELECT FROM feature_appended x WHERE x.k = c.k)"
        if skip:
            where += " AND NOT c.k = ANY(%s::int8[])"
        status_sql = _STATUS_SQL.format(rows=_STATUS_RECOUNT, completeness=_COMPLETENESS_RECOUNT, where=where)
        cur.execute(status_sql, [skip] if skip else None)
    return appended + len(skip)


def _log(
    cur, keys: list[SeriesKey], tails: dict[int, Tail], *, run: FeatureRun | None, full: bool, duration_ms: float
) -> None:
    """One compute log row per series of the chunk (its share of the chunk's time), one statement.
    Timestamps go as microseconds since 1970 (exact, as an interval), not as 10,000 datetimes a
    chunk made and sent one by one."""
    Mode = EnrichmentComputeLog.Mode
    nothing = (str(Mode.NOTHING), 0, 0, None, None)
    rows = [
        nothing
        if (tail := tails.get(k)) is None
        else (
            str(Mode.INCREMENTAL if tail.incremental else Mode.FULL),
            tail.rows_read,
            tail.rows_written,
            tail.first_us,
            tail.last_us,
        )
        for k in range(len(keys))
    ]
    modes, read, written, first, last = (list(column) for column in zip(*rows, strict=True))
    cur.execute(
        """
        INSERT INTO enrichment_compute_log (run_id, symbol_id, timeframe, mode, rows_read, rows_written, first_ts,
                                            last_ts, duration_ms, succeeded, error, created_at)
        SELECT %s, c.symbol_id, c.timeframe, u.mode, u.rows_read, u.rows_written,
               'epoch'::timestamptz + u.first_us * interval '1 microsecond',
               'epoch'::timestamptz + u.last_us * interval '1 microsecond', %s, true, '', clock_timestamp()
        FROM unnest(%s::text[], %s::int8[], %s::int8[], %s::int8[], %s::int8[])
             WITH ORDINALITY AS u(mode, rows_read, rows_written, first_us, last_us, n)
        JOIN feature_chunk c ON c.k = u.n - 1
        """,
        [run.pk if run else None, duration_ms, modes, read, written, first, last],
    )
