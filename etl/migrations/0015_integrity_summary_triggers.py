"""Statement-level triggers that keep the integrity summaries in the writers' transactions.

Every INSERT, UPDATE, DELETE (and COPY) on `market_data` and `symbols` appends what it
changed to the delta tables, from its transition tables, one small aggregate per
statement (never per row): so every writer — the import, the sync, a correction and its
rollback, the live poll, a clean-up merge, an admin delete — keeps the numbers true
without calling anything. `etl.summaries` folds the deltas into the totals.

- `market_data`: candles per market by category (orphan, unclassified, class null /
  empty / mismatched / correct), per symbol by stored asset class
  (`integrity_symbol_tallies`) and per unlinked (market, ticker)
  (`integrity_unlinked_pairs`). A linked candle counts under its symbol's market and class.
- `symbols`: symbols per market (active, enriched, partial, scored, fields filled, by
  source, enriched per day). A change of a symbol's market or class moves its candles
  between categories from its per-symbol tallies (a few rows), never by recounting them.
- `asset_classes`: a changed code moves the candles of its symbols likewise.

Concurrency: deltas are insert-only, so concurrent writers never wait on a summary row.
A statement that counts candles under their symbol's class holds the advisory lock
etl.locks.SUMMARY_SYMBOLS (namespace 72500) shared until it commits; a change of a
symbol's market or class takes it exclusive before it reads the tallies, so it sees
every candle counted under the old class and no statement counts under the old class
after it (test_summary_migration_lock_is_the_registered_one checks the number).
"""

from django.db import migrations

LOCK_SHARED = "PERFORM pg_advisory_xact_lock_shared(72500, 0);  -- etl.locks.SUMMARY_SYMBOLS"
LOCK_EXCLUSIVE = "PERFORM pg_advisory_xact_lock(72500, 0);  -- etl.locks.SUMMARY_SYMBOLS"

CATEGORY = """
CREATE OR REPLACE FUNCTION integrity_candle_category(bigint, text, text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    -- ($1 symbol id, $2 the symbol's asset-class code, $3 the candle's asset_class);
    -- the categories of corrections.selectors.CATEGORY_SQL.
    SELECT CASE WHEN $1 IS NULL THEN 'candles.orphan'
                WHEN $2 IS NULL THEN 'candles.unclassified'
                WHEN $3 IS NULL THEN 'candles.class_null'
                WHEN btrim($3) = '' THEN 'candles.class_empty'
                WHEN $3 = $2 THEN 'candles.class_correct'
                ELSE 'candles.class_mismatched' END
$$;
"""

CANDLES_APPLY = f"""
CREATE OR REPLACE FUNCTION integrity_candles_apply(
    d_symbol bigint[], d_market text[], d_ticker text[], d_class text[], d_n bigint[]
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- One statement's candles, grouped: (symbol, -, -, stored class, n) for linked ones,
    -- (NULL, raw market, raw ticker, -, n) for the others; n < 0 for removed rows.
    IF d_n IS NULL THEN
        RETURN;
    END IF;
    {LOCK_SHARED}
    WITH d AS (
        SELECT * FROM unnest(d_symbol, d_market, d_ticker, d_class, d_n)
            AS u(symbol_id, market, ticker, asset_class, n)
    ), tallies AS (
        INSERT INTO integrity_symbol_tally_deltas (symbol_id, asset_class, candles)
        SELECT symbol_id, asset_class, sum(n) FROM d WHERE symbol_id IS NOT NULL
        GROUP BY 1, 2 HAVING sum(n) <> 0
    ), pairs AS (
        INSERT INTO integrity_unlinked_pair_deltas (market, ticker, candles)
        SELECT market, ticker, sum(n) FROM d WHERE symbol_id IS NULL
        GROUP BY 1, 2 HAVING sum(n) <> 0
    )
    INSERT INTO integrity_summary_deltas (market, metric, value)
    SELECT COALESCE(m.code, d.market, ''), integrity_candle_category(d.symbol_id, ac.code, d.asset_class), sum(d.n)
    FROM d
    LEFT JOIN symbols s ON s.id = d.symbol_id
    LEFT JOIN markets m ON m.id = s.market_id
    LEFT JOIN asset_classes ac ON ac.id = s.asset_class_id
    GROUP BY 1, 2 HAVING sum(d.n) <> 0;
END $$;
"""

# The grouping every market_data trigger feeds to integrity_candles_apply.
_GROUPED = """
    PERFORM integrity_candles_apply(array_agg(g.symbol_id), array_agg(g.market), array_agg(g.ticker),
                                    array_agg(g.asset_class), array_agg(g.n))
    FROM (
        SELECT symbol_id,
               CASE WHEN symbol_id IS NULL THEN market END AS market,
               CASE WHEN symbol_id IS NULL THEN ticker END AS ticker,
               CASE WHEN symbol_id IS NOT NULL THEN asset_class END AS asset_class,
               sum(n)::bigint AS n
        FROM ({rows}) r
        GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0
    ) g;
"""
_NEW = "SELECT symbol_id, market, ticker, asset_class, 1 AS n FROM new_rows"
_OLD = "SELECT symbol_id, market, ticker, asset_class, -1 AS n FROM old_rows"

MARKET_DATA_FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION integrity_md_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {_GROUPED.format(rows=_NEW)}
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION integrity_md_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {_GROUPED.format(rows=_NEW + " UNION ALL " + _OLD)}
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION integrity_md_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {_GROUPED.format(rows=_OLD)}
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION integrity_candles_forget(rows_of regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- The candles of a table (a partition about to be dropped or detached: that fires no
    -- DELETE trigger) leave the summaries, in the caller's transaction.
    EXECUTE format($q$
        SELECT integrity_candles_apply(array_agg(symbol_id), array_agg(market), array_agg(ticker),
                                       array_agg(asset_class), array_agg(-n))
        FROM (
            SELECT symbol_id,
                   CASE WHEN symbol_id IS NULL THEN market END AS market,
                   CASE WHEN symbol_id IS NULL THEN ticker END AS ticker,
                   CASE WHEN symbol_id IS NOT NULL THEN asset_class END AS asset_class,
                   count(*)::bigint AS n
            FROM %s GROUP BY 1, 2, 3, 4
        ) g
    $q$, rows_of);
END $$;

CREATE OR REPLACE FUNCTION integrity_md_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- No rows left: every candle number goes (TRUNCATE waited for the table's writers).
    DELETE FROM integrity_summary WHERE metric LIKE 'candles.%';
    DELETE FROM integrity_summary_deltas WHERE metric LIKE 'candles.%';
    DELETE FROM integrity_symbol_tallies;
    DELETE FROM integrity_symbol_tally_deltas;
    DELETE FROM integrity_unlinked_pairs;
    DELETE FROM integrity_unlinked_pair_deltas;
    RETURN NULL;
END $$;
"""

SYMBOL_METRICS = """
CREATE OR REPLACE FUNCTION integrity_symbol_metrics(s symbols)
RETURNS TABLE (metric text, bucket timestamptz, value bigint) LANGUAGE sql STABLE AS $$
    -- What one symbol adds to its market's numbers (etl.selectors and the enrichment
    -- coverage read them); the recount sums the same function over the table.
    SELECT v.metric, v.bucket, v.value FROM (VALUES
        ('symbols.total', NULL::timestamptz, 1::bigint, TRUE),
        ('symbols.active', NULL, 1, s.is_active),
        ('symbols.enriched', NULL, 1, s.is_active AND s.enriched_at IS NOT NULL),
        ('symbols.partial', NULL, 1, s.is_active AND s.enriched_at IS NULL AND s.name <> ''),
        ('symbols.scored', NULL, 1, s.is_active AND s.data_quality_score IS NOT NULL),
        ('symbols.score_sum', NULL, s.data_quality_score::bigint, s.is_active AND s.data_quality_score IS NOT NULL),
        ('symbols.field.name', NULL, 1, s.is_active AND s.name <> ''),
        ('symbols.field.sector', NULL, 1, s.is_active AND s.sector <> ''),
        ('symbols.field.industry', NULL, 1, s.is_active AND s.industry <> ''),
        ('symbols.field.country', NULL, 1, s.is_active AND s.country <> ''),
        ('symbols.field.quote_currency', NULL, 1, s.is_active AND s.quote_currency <> ''),
        ('symbols.field.market_cap', NULL, 1, s.is_active AND s.market_cap IS NOT NULL),
        ('symbols.field.description', NULL, 1, s.is_active AND s.description <> ''),
        ('symbols.field.website', NULL, 1, s.is_active AND s.website <> ''),
        ('symbols.field.category', NULL, 1, s.is_active AND s.category <> ''),
        ('symbols.source.' || s.source || '.total', NULL, 1, TRUE),
        ('symbols.source.' || s.source || '.active', NULL, 1, s.is_active),
        ('symbols.source.' || s.source || '.low_confidence', NULL, 1, s.inference_confidence < 0.85),
        -- Active symbols by the UTC day they were last enriched: "stale" sums the days before a cutoff.
        ('symbols.enriched_day', date_trunc('day', s.enriched_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', 1,
         s.is_active AND s.enriched_at IS NOT NULL)
    ) AS v(metric, bucket, value, applies)
    WHERE v.applies
$$;
"""

SYMBOLS_MOVE = f"""
CREATE OR REPLACE FUNCTION integrity_symbols_move(
    ids bigint[], old_market text[], old_class text[], new_market text[], new_class text[]
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- Symbols whose market or asset class changed: their candles leave the old
    -- (market, category) and join the new one, read from the per-symbol tallies.
    IF ids IS NULL THEN
        RETURN;
    END IF;
    {LOCK_EXCLUSIVE}
    WITH ch AS (
        SELECT * FROM unnest(ids, old_market, old_class, new_market, new_class)
            AS u(id, old_market, old_class, new_market, new_class)
    ), t AS (
        SELECT symbol_id, asset_class, sum(candles) AS n FROM (
            SELECT symbol_id, asset_class, candles FROM integrity_symbol_tallies WHERE symbol_id = ANY(ids)
            UNION ALL
            SELECT symbol_id, asset_class, candles FROM integrity_symbol_tally_deltas WHERE symbol_id = ANY(ids)
        ) x GROUP BY 1, 2 HAVING sum(candles) <> 0
    )
    INSERT INTO integrity_summary_deltas (market, metric, value)
    SELECT market, metric, sum(n) FROM (
        SELECT ch.old_market AS market, integrity_candle_category(ch.id, ch.old_class, t.asset_class) AS metric,
               -t.n AS n
        FROM t JOIN ch ON ch.id = t.symbol_id
        UNION ALL
        SELECT ch.new_market, integrity_candle_category(ch.id, ch.new_class, t.asset_class), t.n
        FROM t JOIN ch ON ch.id = t.symbol_id
    ) x GROUP BY 1, 2 HAVING sum(n) <> 0;
END $$;
"""

_SYMBOL_ROWS = """
    INSERT INTO integrity_summary_deltas (market, metric, bucket, value)
    SELECT m.code, f.metric, f.bucket, sum(r.sign * f.value)
    FROM ({rows}) r
    JOIN markets m ON m.id = (r.s).market_id
    CROSS JOIN LATERAL integrity_symbol_metrics(r.s) f
    GROUP BY 1, 2, 3 HAVING sum(r.sign * f.value) <> 0;
"""
_NEW_SYMBOLS = "SELECT n::symbols AS s, 1 AS sign FROM new_rows n"
_OLD_SYMBOLS = "SELECT o::symbols AS s, -1 AS sign FROM old_rows o"

SYMBOLS_FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION integrity_symbols_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {_SYMBOL_ROWS.format(rows=_NEW_SYMBOLS)}
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION integrity_symbols_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {_SYMBOL_ROWS.format(rows=_NEW_SYMBOLS + " UNION ALL " + _OLD_SYMBOLS)}
    PERFORM integrity_symbols_move(array_agg(n.id), array_agg(om.code::text), array_agg(oac.code::text),
                                   array_agg(nm.code::text), array_agg(nac.code::text))
    FROM old_rows o
    JOIN new_rows n ON n.id = o.id
    JOIN markets om ON om.id = o.market_id
    JOIN markets nm ON nm.id = n.market_id
    LEFT JOIN asset_classes oac ON oac.id = o.asset_class_id
    LEFT JOIN asset_classes nac ON nac.id = n.asset_class_id
    WHERE o.market_id <> n.market_id OR o.asset_class_id IS DISTINCT FROM n.asset_class_id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION integrity_symbols_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {_SYMBOL_ROWS.format(rows=_OLD_SYMBOLS)}
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION integrity_asset_classes_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A renamed code changes which candles agree with their symbol's class.
    PERFORM integrity_symbols_move(array_agg(s.id), array_agg(m.code::text), array_agg(o.code::text),
                                   array_agg(m.code::text), array_agg(n.code::text))
    FROM old_rows o
    JOIN new_rows n ON n.id = o.id AND n.code IS DISTINCT FROM o.code
    JOIN symbols s ON s.asset_class_id = n.id
    JOIN markets m ON m.id = s.market_id;
    RETURN NULL;
END $$;
"""

# One trigger per event: PostgreSQL allows transition tables only on single-event triggers.
TRIGGERS = [
    ("integrity_summary_ins", "market_data", "INSERT", "NEW TABLE AS new_rows", "integrity_md_insert"),
    ("integrity_summary_upd", "market_data", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows", "integrity_md_update"),
    ("integrity_summary_del", "market_data", "DELETE", "OLD TABLE AS old_rows", "integrity_md_delete"),
    ("integrity_summary_ins", "symbols", "INSERT", "NEW TABLE AS new_rows", "integrity_symbols_insert"),
    ("integrity_summary_upd", "symbols", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows", "integrity_symbols_update"),
    ("integrity_summary_del", "symbols", "DELETE", "OLD TABLE AS old_rows", "integrity_symbols_delete"),
    ("integrity_summary_upd", "asset_classes", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows", "integrity_asset_classes_update"),
]
FUNCTIONS = [
    "integrity_md_insert()",
    "integrity_md_update()",
    "integrity_md_delete()",
    "integrity_md_truncate()",
    "integrity_candles_forget(regclass)",
    "integrity_symbols_insert()",
    "integrity_symbols_update()",
    "integrity_symbols_delete()",
    "integrity_asset_classes_update()",
    "integrity_symbols_move(bigint[], text[], text[], text[], text[])",
    "integrity_symbol_metrics(symbols)",
    "integrity_candles_apply(bigint[], text[], text[], text[], bigint[])",
    "integrity_candle_category(bigint, text, text)",
]

CREATE = "\n".join(
    [CATEGORY, CANDLES_APPLY, MARKET_DATA_FUNCTIONS, SYMBOL_METRICS, SYMBOLS_MOVE, SYMBOLS_FUNCTIONS]
    + [
        f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {tables}"
        f" FOR EACH STATEMENT EXECUTE FUNCTION {function}();"
        for name, table, event, tables, function in TRIGGERS
    ]
    + [
        "CREATE TRIGGER integrity_summary_trunc AFTER TRUNCATE ON market_data"
        " FOR EACH STATEMENT EXECUTE FUNCTION integrity_md_truncate();"
    ]
)
DROP = "\n".join(
    [f"DROP TRIGGER IF EXISTS {name} ON {table};" for name, table, *_ in TRIGGERS]
    + ["DROP TRIGGER IF EXISTS integrity_summary_trunc ON market_data;"]
    + [f"DROP FUNCTION IF EXISTS {signature};" for signature in FUNCTIONS]
)


class Migration(migrations.Migration):
    dependencies = [("etl", "0014_integrity_summaries")]

    operations = [migrations.RunSQL(CREATE, DROP)]
