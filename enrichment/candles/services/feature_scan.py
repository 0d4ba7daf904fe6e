"""Which series the feature step has to do: read in proportion to what changed (issue 14).

A series (symbol, timeframe) is stale when market_data changed after its watermark
(`enrichment_status.source_synced_until`: the newest `market_data.updated_at` copied into
market_data_v2), when it has no status row yet, or when its features are pending or failed.

The first run over a scope (or a full one) groups every candle of the scope. Every run that
finishes records the scope's high-water mark (`etl.models.ScanMark`): the horizon of its scan.
The next run reads only the candles written after that mark, through the BRIN index on
`market_data.updated_at`, plus the series whose status is not `ok`: a run with nothing new
reads a few BRIN ranges and the status rows, whatever the number of candles.

Why nothing is missed: every writer of market_data stamps `updated_at` with its transaction's
start (`now()`: the import, the live poller, the sync's link, a correction), and the horizon is
the start of the oldest transaction still open when the scan begins (`HORIZON_SQL`). A candle the
scan could not see was written by a transaction open then or begun later, so its `updated_at` is
at or after the horizon: after the mark and after the watermark of its series, which is never
later than the horizon. That is why the watermark needs no re-read overlap.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction

from enrichment.candles.models import EnrichmentStatus

# Rows of context an incremental series reads besides its new candles (for the row budget only).
CONTEXT_ESTIMATE = 128

# One statement before the scan: the horizon (the oldest transaction still open elsewhere: a
# row it writes has updated_at >= its start, so a watermark or mark below it cannot skip a
# candle that commits after the scan read), the scope's mark, and its series with a status row.
HORIZON_SQL = """
SELECT least(clock_timestamp(), min(xact_start)) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
"""
PRELUDE_SQL = f"""
SELECT ({HORIZON_SQL}),
       (SELECT max(mark) FROM scan_marks WHERE name = ANY(%(marks)s)),
       (SELECT count(*) FROM enrichment_status es WHERE true {{es_where}}),
       (SELECT coalesce(sum(brin_summarize_new_values(x.indexrelid)), 0)
        FROM pg_partition_tree('market_data'::regclass) p JOIN pg_index x ON x.indrelid = p.relid
        WHERE p.isleaf AND x.indexrelid::regclass::text LIKE '%%updated_at%%')
"""  # noqa: S608 - constant text

# Without a mark (the scope's first run, or `full`): the newest change of every linked series
# of the scope, against what its status row says was copied already.
FULL_SCAN_SQL = """
SELECT md.symbol_id, md.timeframe, max(md.updated_at) AS changed,
       count(*) FILTER (WHERE es.source_synced_until IS NULL OR md.updated_at > es.source_synced_until) AS fresh,
       count(*) AS candles, es.source_synced_until, es.state
FROM market_data md
LEFT JOIN enrichment_status es ON es.symbol_id = md.symbol_id AND es.timeframe = md.timeframe
WHERE md.symbol_id IS NOT NULL {md_where}
GROUP BY md.symbol_id, md.timeframe, es.source_synced_until, es.state
ORDER BY md.symbol_id, md.timeframe
"""

# With a mark: the series with candles written after it (the BRIN index on updated_at), and the
# ones whose status is not ok. A series without a status row, or one not ok that changed
# before the mark, is counted in full (its candles, its newest change): few, and it needs them.
MARK_SCAN_SQL = """
WITH recent AS (
    SELECT md.symbol_id, md.timeframe, max(md.updated_at) AS changed, count(*) AS candles
    FROM market_data md
    WHERE md.updated_at > %(mark)s AND md.symbol_id IS NOT NULL {md_where}
    GROUP BY md.symbol_id, md.timeframe
), candidates AS (
    SELECT symbol_id, timeframe FROM recent
    UNION
    SELECT es.symbol_id, es.timeframe FROM enrichment_status es WHERE es.state <> 'ok' {es_where}
)
SELECT c.symbol_id, c.timeframe, coalesce(r.changed, whole.changed) AS changed,
       CASE WHEN r.symbol_id IS NULL OR es.symbol_id IS NULL THEN whole.candles ELSE r.candles END AS fresh,
       CASE WHEN r.symbol_id IS NULL OR es.symbol_id IS NULL THEN whole.candles ELSE r.candles END AS candles,
       es.source_synced_until, es.state
FROM candidates c
LEFT JOIN recent r ON r.symbol_id = c.symbol_id AND r.timeframe = c.timeframe
LEFT JOIN enrichment_status es ON es.symbol_id = c.symbol_id AND es.timeframe = c.timeframe
LEFT JOIN LATERAL (
    SELECT max(md.updated_at) AS changed, count(*) AS candles FROM market_data md
    WHERE md.symbol_id = c.symbol_id AND md.timeframe = c.timeframe
      AND (r.symbol_id IS NULL OR es.symbol_id IS NULL)
) whole ON true
WHERE coalesce(r.changed, whole.changed) IS NOT NULL
ORDER BY c.symbol_id, c.timeframe
"""


@dataclass(frozen=True, slots=True)
class ScannedSeries:
    symbol_id: int
    timeframe: str
    changed: datetime  # the newest market_data.updated_at of the series
    watermark: datetime  # what its status row's source_synced_until becomes once copied
    since: datetime | None  # copy the candles with updated_at after this (None: all)
    estimate: int  # rows a chunk reads for it (the row budget)


@dataclass(frozen=True, slots=True)
class Scan:
    stale: list[ScannedSeries]
    fresh: int  # series of the scope with nothing new and nothing pending
    mark_name: str  # the scope's ScanMark
    horizon: datetime  # the scope's next mark, once every stale series is done
    read_since: datetime | None  # the mark this scan read from (None: it read every candle)


def scan_mark_name(*, symbol_ids: list[int] | None, timeframes: list[str] | None) -> str:
    """The ScanMark of a scope: `features:all`, or a digest of its symbols and timeframes."""
    if not symbol_ids and not timeframes:
        return "features:all"
    scope = f"s={','.join(map(str, sorted(symbol_ids or [])))};t={','.join(sorted(timeframes or []))}"
    return f"features:{hashlib.sha256(scope.encode()).hexdigest()[:32]}"


def _where(symbol_ids: list[int] | None, timeframes: list[str] | None, alias: str) -> tuple[str, dict]:
    clauses, params = [], {}
    if symbol_ids:
        clauses.append(f"AND {alias}.symbol_id = ANY(%(symbols)s)")
        params["symbols"] = list(symbol_ids)
    if timeframes:
        clauses.append(f"AND {alias}.timeframe = ANY(%(timeframes)s)")
        params["timeframes"] = list(timeframes)
    return " ".join(clauses), params


def series_scan(*, symbol_ids: list[int] | None, timeframes: list[str] | None, full: bool) -> Scan:
    """The stale series of the scope (all of them with `full`) and how many are fresh: reads the
    candles written since the scope's mark, or every candle of the scope when it has none. The
    scope's own mark or the whole table's, whichever is later: a mark of every series holds for
    any part of them."""
    md_where, params = _where(symbol_ids, timeframes, "md")
    es_where, _ = _where(symbol_ids, timeframes, "es")
    name = scan_mark_name(symbol_ids=symbol_ids, timeframes=timeframes)
    with connection.cursor() as cur:
        cur.execute(PRELUDE_SQL.format(es_where=es_where), {**params, "marks": sorted({name, "features:all"})})
        horizon, mark, known, _ = cur.fetchone()
        horizon -= timedelta(microseconds=1)
    if full or mark is None:
        mark = None
        with connection.cursor() as cur:
            cur.execute(FULL_SCAN_SQL.format(md_where=md_where), params)
            rows = cur.fetchall()
    else:
        rows = _mark_scan(MARK_SCAN_SQL.format(md_where=md_where, es_where=es_where), {**params, "mark": mark})
    stale, fresh, stale_known = [], 0, 0
    for symbol_id, timeframe, changed, fresh_rows, candles, synced, state in rows:
        if not (full or synced is None or state != EnrichmentStatus.State.OK or changed > synced):
            fresh += 1
            continue
        stale_known += synced is not None
        since = None if full or synced is None else synced
        estimate = candles if since is None else min(candles, fresh_rows + CONTEXT_ESTIMATE)
        stale.append(ScannedSeries(symbol_id, timeframe, changed, min(changed, horizon), since, estimate))
    if mark is not None:
        # The mark scan saw only the series that changed: the others of the scope are fresh.
        fresh = known - stale_known
    return Scan(stale=stale, fresh=fresh, mark_name=name, horizon=horizon, read_since=mark)


def _mark_scan(sql: str, params: dict) -> list[tuple]:
    """The mark scan through the BRIN index. Right after a big import the partitions often have
    no statistics yet, and the planner's default guess (a third of the rows) makes it read every
    candle; the BRIN ranges were just summarized (PRELUDE_SQL: the new ones only, what a scan
    would read anyway), so the index reads only the ranges written since the mark. JIT off: the
    cost of a plan that would have needed a seq scan is huge, which makes PostgreSQL compile it
    (1.5 s for a plan that runs in 1 ms). Both are reset after it: inside a caller's transaction a
    SET LOCAL would outlive this block and reach the chunks' statements."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL enable_seqscan = off; SET LOCAL jit = off")
        cur.execute(sql, params)
        rows = cur.fetchall()
        cur.execute("RESET enable_seqscan; RESET jit")
        return rows


def scan_horizon() -> datetime:
    """The newest watermark a copy starting now may record (see HORIZON_SQL): for the
    per-series path, which reads its series' newest change itself."""
    with connection.cursor() as cur:
        cur.execute(HORIZON_SQL)
        return cur.fetchone()[0] - timedelta(microseconds=1)


def scan_mark_advance(scan: Scan) -> None:
    """Record the scope's new mark once every stale series of `scan` is done (copied, or its
    failure on its status row): a later run reads only what was written after the horizon."""
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO scan_marks (name, mark, updated_at) VALUES (%s, %s, now())
            ON CONFLICT (name) DO UPDATE SET mark = greatest(scan_marks.mark, EXCLUDED.mark), updated_at = now()
            """,
            [scan.mark_name, scan.horizon],
        )
