"""Statement-level triggers that keep enrichment's numbers in the integrity summaries
(etl.summaries), in the writers' own transactions:

- `enrichment_status` (one row per series: the feature step's summary of its
  market_data_v2 rows): series per market and state, their rows, mean quality and
  completeness (`series.*`);
- `data_quality_metrics`: the days measured and their expected and complete bars per
  market, the completeness gate's figure (`quality.*`);
- `backfill_state`: backfills per market and state (`backfill.*`);
- `enrichment_fetch_log`: provider calls and successes per provider and hour (`fetch.*`);
- `enrichment_compute_log`: computations, failures, rows written and durations per hour
  (`compute.*`).

Each table's contribution is one SQL function over its row type, used by the triggers
and by the recount alike (enrichment.summaries registers the recount). The statements
that count under a symbol's market hold etl.locks.SUMMARY_SYMBOLS (72500) shared; a
symbol moved to another market takes it exclusive and moves its rows' numbers.
"""

from django.db import migrations

LOCK_SHARED = "PERFORM pg_advisory_xact_lock_shared(72500, 0);  -- etl.locks.SUMMARY_SYMBOLS"
LOCK_EXCLUSIVE = "PERFORM pg_advisory_xact_lock(72500, 0);  -- etl.locks.SUMMARY_SYMBOLS"

SCALED = """
CREATE OR REPLACE FUNCTION integrity_scaled(double precision) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    -- A fraction as an integer (etl.summaries.SCALE), so sums are exact; NULL when not a number.
    SELECT CASE WHEN $1 IS NULL OR $1 = 'NaN' OR $1 IN ('Infinity', '-Infinity') THEN NULL
                ELSE round($1 * 1000000)::bigint END
$$;
"""

_HOUR = "date_trunc('hour', {ts} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"

METRIC_FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION integrity_series_metrics(e enrichment_status)
RETURNS TABLE (metric text, bucket timestamptz, value bigint) LANGUAGE sql STABLE AS $$
    SELECT v.metric, NULL::timestamptz, v.value FROM (VALUES
        ('series.total', 1::bigint),
        ('series.state.' || e.state, 1),
        ('series.rows', e.rows),
        ('series.quality_n', CASE WHEN integrity_scaled(e.avg_quality_score) IS NOT NULL THEN 1 END),
        ('series.quality_sum', integrity_scaled(e.avg_quality_score)),
        ('series.completeness_n', CASE WHEN integrity_scaled(e.completeness) IS NOT NULL THEN 1 END),
        ('series.completeness_sum', integrity_scaled(e.completeness))
    ) AS v(metric, value) WHERE v.value IS NOT NULL
$$;

CREATE OR REPLACE FUNCTION integrity_quality_metrics(q data_quality_metrics)
RETURNS TABLE (metric text, bucket timestamptz, value bigint) LANGUAGE sql STABLE AS $$
    -- Per measured day: the completeness gate reads sum(completeness x expected) / sum(expected)
    -- over the latest days.
    SELECT v.metric, q.day::timestamp AT TIME ZONE 'UTC', v.value FROM (VALUES
        ('quality.days', 1::bigint, TRUE),
        ('quality.expected', q.expected_bars::bigint,
         q.expected_bars > 0 AND integrity_scaled(q.completeness) IS NOT NULL),
        ('quality.complete', integrity_scaled(q.completeness * q.expected_bars),
         q.expected_bars > 0 AND integrity_scaled(q.completeness) IS NOT NULL)
    ) AS v(metric, value, applies) WHERE v.applies
$$;

CREATE OR REPLACE FUNCTION integrity_backfill_metrics(b backfill_state)
RETURNS TABLE (metric text, bucket timestamptz, value bigint) LANGUAGE sql STABLE AS $$
    SELECT v.metric, NULL::timestamptz, 1::bigint FROM (VALUES ('backfill.total'), ('backfill.state.' || b.state)) AS v(metric)
$$;

CREATE OR REPLACE FUNCTION integrity_fetch_metrics(f enrichment_fetch_log)
RETURNS TABLE (metric text, bucket timestamptz, value bigint) LANGUAGE sql STABLE AS $$
    -- Attempt 0 is a call that was never made (refused before the request): not a call.
    SELECT v.metric, {_HOUR.format(ts="f.created_at")}, 1::bigint FROM (VALUES
        ('fetch.calls', f.attempt >= 1),
        ('fetch.ok', f.attempt >= 1 AND f.outcome = 'ok')
    ) AS v(metric, applies) WHERE v.applies
$$;

CREATE OR REPLACE FUNCTION integrity_compute_metrics(c enrichment_compute_log)
RETURNS TABLE (metric text, bucket timestamptz, value bigint) LANGUAGE sql STABLE AS $$
    SELECT v.metric, {_HOUR.format(ts="c.created_at")}, v.value FROM (VALUES
        ('compute.runs', 1::bigint),
        ('compute.failures', CASE WHEN NOT c.succeeded THEN 1 END),
        ('compute.rows_written', c.rows_written),
        ('compute.duration_sum', integrity_scaled(c.duration_ms)),
        ('compute.duration.max', integrity_scaled(c.duration_ms))
    ) AS v(metric, value) WHERE v.value IS NOT NULL
$$;
"""

_BY_SYMBOL_MARKET = "JOIN symbols s ON s.id = (r.t).symbol_id JOIN markets m ON m.id = s.market_id"
# (table, short name, metric function, market expression, join, lock)
TABLES = [
    ("enrichment_status", "series", "integrity_series_metrics", "m.code", _BY_SYMBOL_MARKET, LOCK_SHARED),
    ("data_quality_metrics", "quality", "integrity_quality_metrics", "m.code", _BY_SYMBOL_MARKET, LOCK_SHARED),
    ("backfill_state", "backfill", "integrity_backfill_metrics", "m.code", _BY_SYMBOL_MARKET, LOCK_SHARED),
    ("enrichment_fetch_log", "fetch", "integrity_fetch_metrics", "(r.t).provider", "", ""),
    ("enrichment_compute_log", "compute", "integrity_compute_metrics", "''", "", ""),
]
EVENTS = {
    "insert": ("INSERT", "NEW TABLE AS new_rows", ["SELECT n::{table} AS t, 1 AS sign FROM new_rows n"]),
    "update": (
        "UPDATE",
        "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        ["SELECT n::{table} AS t, 1 AS sign FROM new_rows n", "SELECT o::{table} AS t, -1 AS sign FROM old_rows o"],
    ),
    "delete": ("DELETE", "OLD TABLE AS old_rows", ["SELECT o::{table} AS t, -1 AS sign FROM old_rows o"]),
}

# A ".max" keeps the largest value a statement adds; removed rows do not lower it.
_VALUE = "CASE WHEN f.metric LIKE '%.max' THEN max(f.value) FILTER (WHERE r.sign > 0) ELSE sum(r.sign * f.value) END"


def _function(table: str, name: str, srf: str, market: str, join: str, lock: str, event: str) -> str:
    rows = " UNION ALL ".join(part.format(table=table) for part in EVENTS[event][2])
    return f"""
CREATE OR REPLACE FUNCTION integrity_{name}_{event}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {lock}
    INSERT INTO integrity_summary_deltas (market, metric, bucket, value)
    SELECT {market}, f.metric, f.bucket, {_VALUE}
    FROM ({rows}) r
    {join}
    CROSS JOIN LATERAL {srf}(r.t) f
    GROUP BY 1, 2, 3
    HAVING {_VALUE} <> 0;
    RETURN NULL;
END $$;
"""


SYMBOLS_MOVED = f"""
CREATE OR REPLACE FUNCTION integrity_enrichment_symbols_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A symbol moved to another market takes its series, quality days and backfills along
    -- (read by the symbol's index: a change made by hand, one symbol's rows).
    IF NOT EXISTS (SELECT 1 FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE o.market_id <> n.market_id) THEN
        RETURN NULL;
    END IF;
    {LOCK_EXCLUSIVE}
    WITH moved AS (
        SELECT n.id, om.code AS old_market, nm.code AS new_market
        FROM old_rows o JOIN new_rows n ON n.id = o.id
        JOIN markets om ON om.id = o.market_id JOIN markets nm ON nm.id = n.market_id
        WHERE o.market_id <> n.market_id
    ), x AS (
        SELECT mv.old_market, mv.new_market, f.metric, f.bucket, f.value
        FROM moved mv JOIN enrichment_status e ON e.symbol_id = mv.id CROSS JOIN LATERAL integrity_series_metrics(e) f
        UNION ALL
        SELECT mv.old_market, mv.new_market, f.metric, f.bucket, f.value
        FROM moved mv JOIN data_quality_metrics q ON q.symbol_id = mv.id
        CROSS JOIN LATERAL integrity_quality_metrics(q) f
        UNION ALL
        SELECT mv.old_market, mv.new_market, f.metric, f.bucket, f.value
        FROM moved mv JOIN backfill_state b ON b.symbol_id = mv.id CROSS JOIN LATERAL integrity_backfill_metrics(b) f
    )
    INSERT INTO integrity_summary_deltas (market, metric, bucket, value)
    SELECT old_market, metric, bucket, -sum(value) FROM x GROUP BY 1, 2, 3
    UNION ALL
    SELECT new_market, metric, bucket, sum(value) FROM x GROUP BY 1, 2, 3;
    RETURN NULL;
END $$;
"""


def _statements() -> tuple[str, str]:
    create, drop = [SCALED, METRIC_FUNCTIONS, SYMBOLS_MOVED], []
    for table, name, srf, market, join, lock in TABLES:
        for event in EVENTS:
            keyword, transition, _ = EVENTS[event]
            create.append(_function(table, name, srf, market, join, lock, event))
            create.append(
                f"CREATE TRIGGER integrity_summary_{event[:3]} AFTER {keyword} ON {table} REFERENCING {transition}"
                f" FOR EACH STATEMENT EXECUTE FUNCTION integrity_{name}_{event}();"
            )
            drop.append(f"DROP TRIGGER IF EXISTS integrity_summary_{event[:3]} ON {table};")
            drop.append(f"DROP FUNCTION IF EXISTS integrity_{name}_{event}();")
        drop.append(f"DROP FUNCTION IF EXISTS {srf}({table});")
    create.append(
        "CREATE TRIGGER integrity_summary_upd_enrichment AFTER UPDATE ON symbols"
        " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
        " FOR EACH STATEMENT EXECUTE FUNCTION integrity_enrichment_symbols_moved();"
    )
    drop = [
        "DROP TRIGGER IF EXISTS integrity_summary_upd_enrichment ON symbols;",
        "DROP FUNCTION IF EXISTS integrity_enrichment_symbols_moved();",
        *drop,
        "DROP FUNCTION IF EXISTS integrity_scaled(double precision);",
    ]
    return "\n".join(create), "\n".join(drop)


CREATE, DROP = _statements()


class Migration(migrations.Migration):
    dependencies = [("enrichment", "0009_backfill_cancelled_state"), ("etl", "0016_fill_integrity_summaries")]

    operations = [migrations.RunSQL(CREATE, DROP)]
