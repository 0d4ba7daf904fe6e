"""SQL of the candle tables' move to yearly range partitions (docs/storage.md), shared by
etl 0013 (market_data) and enrichment 0008 (market_data_v2). Not a migration itself: the
migration loader skips modules whose name starts with an underscore.

The conversion of a populated table, in one transaction (it holds ACCESS EXCLUSIVE on the table
throughout: stop the workers first; docs/storage.md has the timings):
rename the old table and its sequence, drop its indexes (the names are reused), create the
partitioned table and a partition for every year the old rows have (plus this year and the
next), copy the rows with their ids, carry the sequence's position over, then build the keys
and indexes once over the copied rows (faster than maintaining them row by row) and drop the
old table. The statement trigger `metric_market_data_newest` is re-installed by
`etl.event_triggers` after every migrate.
"""

from __future__ import annotations

ENSURE_FUNCTION = """
CREATE OR REPLACE FUNCTION candle_partition_ensure(parent text, first_year int, last_year int)
RETURNS int[] LANGUAGE plpgsql AS $$
-- The yearly partitions <parent>_y<YYYY> of first_year..last_year that are missing: a plain
-- table LIKE the parent, then ATTACH (SHARE UPDATE EXCLUSIVE on the parent, not ACCESS
-- EXCLUSIVE as CREATE TABLE ... PARTITION OF would take). Returns the years made.
-- Only a new, empty table is ever attached: ATTACH checks the partition bound and the
-- foreign keys, not the statement-level symbol check (enrichment 0013), so a table that
-- already holds rows would bring them in unchecked.
-- PostgreSQL does not copy statement triggers to a partition: a parent's `symbol_refs_ins`
-- (enrichment 0013) is created on the new partition too, so a write straight into it is
-- checked as well (it does not fire when the parent is the statement's target).
DECLARE
    y int;
    part text;
    made int[] := '{}';
BEGIN
    FOR y IN first_year .. last_year LOOP
        part := parent || '_y' || y;
        IF to_regclass(format('%I', part)) IS NULL THEN
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)',
                           part, parent);
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', parent, part,
                           make_timestamptz(y, 1, 1, 0, 0, 0, 'UTC'), make_timestamptz(y + 1, 1, 1, 0, 0, 0, 'UTC'));
            IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass(format('%I', parent))
                       AND tgname = 'symbol_refs_ins') THEN
                EXECUTE format('CREATE TRIGGER symbol_refs_ins AFTER INSERT ON %I REFERENCING NEW TABLE AS new_rows'
                               ' FOR EACH STATEMENT EXECUTE FUNCTION symbol_refs_insert()', part);
            END IF;
            made := made || y;
        END IF;
    END LOOP;
    RETURN made;
END $$;
"""
DROP_ENSURE_FUNCTION = "DROP FUNCTION IF EXISTS candle_partition_ensure(text, int, int)"


def partitions_for(table: str, source: str) -> str:
    """Partitions for every year `source` has rows in, and for this year and the next."""
    year = "extract(year FROM {} AT TIME ZONE 'UTC')::int"
    return f"""
SELECT candle_partition_ensure('{table}', y, y)
FROM (SELECT DISTINCT {year.format("ts")} AS y FROM {source}) AS years;
SELECT candle_partition_ensure('{table}', {year.format("now()")}, {year.format("now()")} + 1);
"""


def move_aside(
    table: str, *, trigger: str = "", drop_constraints: tuple[str, ...], drop_indexes: tuple[str, ...]
) -> str:
    """Rename `table` (and its id sequence) to `<table>_old` and free the names of its keys and indexes."""
    sql = [
        f"ALTER TABLE {table} RENAME TO {table}_old;",
        f"ALTER SEQUENCE {table}_id_seq RENAME TO {table}_old_id_seq;",
    ]
    if trigger:
        sql.append(f"DROP TRIGGER IF EXISTS {trigger} ON {table}_old;")
    sql += [f"ALTER TABLE {table}_old DROP CONSTRAINT IF EXISTS {name};" for name in drop_constraints]
    sql += [f"DROP INDEX IF EXISTS {name};" for name in drop_indexes]
    return "\n".join(sql)


def carry_sequence(table: str) -> str:
    """The new id sequence continues where the old one stopped (ids are never given twice)."""
    return f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), last_value, is_called) FROM {table}_old_id_seq;"


# ---------------------------------------------------------------------------- market_data

MARKET_DATA_COLUMNS = """
    id bigint NOT NULL DEFAULT nextval('market_data_id_seq'),
    ts timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL DEFAULT statement_timestamp(),
    symbol_id integer,
    import_file_id integer,
    ticker varchar(32) NOT NULL,
    market varchar(32) NOT NULL,
    timeframe varchar(8) NOT NULL,
    open numeric(28, 10) NOT NULL,
    high numeric(28, 10) NOT NULL,
    low numeric(28, 10) NOT NULL,
    close numeric(28, 10) NOT NULL,
    volume numeric(30, 8) NOT NULL,
    adj_close numeric(28, 10),
    asset_class varchar(32),
    extra jsonb
"""
MARKET_DATA_COPY = """
INSERT INTO market_data (id, ts, updated_at, symbol_id, import_file_id, ticker, market, timeframe,
                         open, high, low, close, volume, adj_close, asset_class, extra)
SELECT o.id, o.ts, o.updated_at, o.symbol_id, {file_id}, o.ticker, o.market, o.timeframe,
       o.open, o.high, o.low, o.close, o.volume, o.adj_close, o.asset_class, o.extra
FROM market_data_old o {join};
"""
# A candle whose import job was pruned before this migration had only its path left: the path
# goes into the audit trail (one row per file), so no provenance is dropped silently.
LOST_PATHS = """
INSERT INTO data_corrections (kind, run_ref, table_name, ticker, market, field, old_value, new_value, row_count,
                              detail, created_by, created_at)
SELECT 'provenance_kept', 'migration:etl.0013', 'market_data', o.ticker, o.market, 'source_file', o.source_file,
       NULL, count(*), jsonb_build_object('import_job_id', max(o.import_job_id)), 'migration', now()
FROM market_data_old o
WHERE o.source_file <> '' AND o.source_file NOT LIKE 'live:%' {unmatched}
GROUP BY o.ticker, o.market, o.source_file;
"""
MARKET_DATA_KEYS = """
ALTER TABLE market_data ADD CONSTRAINT uniq_market_data_bar PRIMARY KEY (ticker, market, timeframe, ts);
CREATE INDEX market_data_symbol_tf ON market_data (symbol_id, timeframe);
CREATE INDEX market_data_unlinked ON market_data (market, ticker) WHERE symbol_id IS NULL;
CREATE INDEX market_data_id_brin ON market_data USING brin (id) WITH (pages_per_range = 32, autosummarize = on);
ALTER TABLE market_data ADD CONSTRAINT market_data_symbol_id_70e10f80_fk_symbols_id
    FOREIGN KEY (symbol_id) REFERENCES symbols (id) DEFERRABLE INITIALLY DEFERRED;
"""


def market_data_forward() -> str:
    copy_with_files = MARKET_DATA_COPY.format(
        file_id="f.id::int",
        join="LEFT JOIN import_files f ON f.job_id = o.import_job_id AND f.relpath = o.source_file",
    )
    lost = LOST_PATHS.format(
        unmatched="AND NOT EXISTS (SELECT 1 FROM import_files f"
        " WHERE f.job_id = o.import_job_id AND f.relpath = o.source_file)"
    )
    return f"""
{ENSURE_FUNCTION}
{
        move_aside(
            "market_data",
            trigger="metric_market_data_newest",
            drop_constraints=("uniq_market_data_bar",),
            drop_indexes=(
                "market_data_symbol_tf_ts",
                "market_data_market_ac",
                "market_data_ts",
                "market_data_unlinked",
            ),
        )
    }
CREATE SEQUENCE market_data_id_seq;
CREATE TABLE market_data ({MARKET_DATA_COLUMNS}) PARTITION BY RANGE (ts);
ALTER SEQUENCE market_data_id_seq OWNED BY market_data.id;
{carry_sequence("market_data")}
{partitions_for("market_data", "market_data_old")}
DO $do$ BEGIN
    -- import_files exists unless this is a new database (then there is nothing to copy).
    IF to_regclass('import_files') IS NOT NULL THEN
        {copy_with_files}
        {lost}
    ELSE
        {MARKET_DATA_COPY.format(file_id="NULL", join="")}
        {LOST_PATHS.format(unmatched="")}
    END IF;
END $do$;
{MARKET_DATA_KEYS}
DROP TABLE market_data_old;
ANALYZE market_data;
"""


MARKET_DATA_OLD_TABLE = """
CREATE TABLE market_data (
    id bigint GENERATED BY DEFAULT AS IDENTITY CONSTRAINT market_data_pkey PRIMARY KEY,
    ticker varchar(32) NOT NULL,
    market varchar(32) NOT NULL,
    timeframe varchar(8) NOT NULL,
    ts timestamp with time zone NOT NULL,
    open numeric(28, 10) NOT NULL,
    high numeric(28, 10) NOT NULL,
    low numeric(28, 10) NOT NULL,
    close numeric(28, 10) NOT NULL,
    volume numeric(30, 8) NOT NULL,
    adj_close numeric(28, 10),
    asset_class varchar(32),
    extra jsonb,
    source_file varchar(500) NOT NULL DEFAULT '',
    import_job_id bigint,
    created_at timestamp with time zone NOT NULL DEFAULT statement_timestamp(),
    updated_at timestamp with time zone NOT NULL DEFAULT statement_timestamp(),
    symbol_id bigint
);
"""
MARKET_DATA_OLD_COPY = """
INSERT INTO market_data (id, ticker, market, timeframe, ts, open, high, low, close, volume, adj_close, asset_class,
                         extra, source_file, import_job_id, created_at, updated_at, symbol_id)
SELECT n.id, n.ticker, n.market, n.timeframe, n.ts, n.open, n.high, n.low, n.close, n.volume, n.adj_close,
       n.asset_class, n.extra, {path}, {job}, n.updated_at, n.updated_at, n.symbol_id
FROM market_data_old n {join};
"""
MARKET_DATA_OLD_KEYS = """
ALTER TABLE market_data ADD CONSTRAINT uniq_market_data_bar UNIQUE (ticker, market, timeframe, ts);
CREATE INDEX market_data_symbol_tf_ts ON market_data (symbol_id, timeframe, ts);
CREATE INDEX market_data_market_ac ON market_data (market, asset_class);
CREATE INDEX market_data_ts ON market_data (ts);
CREATE INDEX market_data_unlinked ON market_data (market, ticker) WHERE symbol_id IS NULL;
ALTER TABLE market_data ADD CONSTRAINT market_data_symbol_id_70e10f80_fk_symbols_id
    FOREIGN KEY (symbol_id) REFERENCES symbols (id) DEFERRABLE INITIALLY DEFERRED;
"""


def market_data_backward() -> str:
    """Back to one plain table: the path and job come back from the import-file row; created_at
    (not kept) becomes updated_at."""
    with_files = MARKET_DATA_OLD_COPY.format(
        path="coalesce(f.relpath, '')", job="f.job_id", join="LEFT JOIN import_files f ON f.id = n.import_file_id"
    )
    return f"""
{
        move_aside(
            "market_data",
            trigger="metric_market_data_newest",
            drop_constraints=("uniq_market_data_bar",),
            drop_indexes=("market_data_symbol_tf", "market_data_unlinked", "market_data_id_brin"),
        )
    }
{MARKET_DATA_OLD_TABLE}
DO $do$ BEGIN
    IF to_regclass('import_files') IS NOT NULL THEN
        {with_files}
    ELSE
        {MARKET_DATA_OLD_COPY.format(path="''", job="NULL", join="")}
    END IF;
END $do$;
{carry_sequence("market_data")}
{MARKET_DATA_OLD_KEYS}
DROP TABLE market_data_old;
{DROP_ENSURE_FUNCTION};
ANALYZE market_data;
"""
