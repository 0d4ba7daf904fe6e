"""market_data_v2 and data_quality_metrics: their foreign keys to symbols become checks per
statement, the same guarantee without one trigger call per written row.

A foreign key checks every written row on its own (one RI trigger call and one index probe of
`symbols` per row, DEFERRABLE INITIALLY DEFERRED: all of them at commit). The feature step from
scratch writes 1.25 M candles and 1.8 M metric days for 5,000 daily series, and those checks
took 9.6 s of its 36 s (bench_scale 5000 250, profiled): as long as writing the rows. Here:

- insert: a statement-level trigger reads the statement's rows once (the transition table; the
  summary triggers of data_quality_metrics read the same one), locks the symbols they name as a
  foreign key's check locks them (FOR KEY SHARE: a concurrent delete of one of those symbols
  waits for this transaction, and one that committed first leaves its symbol missing) and fails
  the statement with a foreign_key_violation naming a missing symbol id. One statement per
  written statement, whatever its rows. Unlike the deferred key it fails at the statement, not
  at commit: no writer inserts candles or metrics before their symbol.
- update: symbol_id is never rewritten by our code; a row trigger that fires only when an
  UPDATE changes it checks the new symbol (no cost on the feature step's UPDATEs).
- delete of a symbol: a row trigger on symbols deletes the symbol's rows of both tables first
  (Django's on_delete=CASCADE already deleted them: two index probes), so a DELETE in SQL leaves
  no orphans either, and the quality summaries' triggers still find the symbol's market. A
  TRUNCATE of symbols truncates both tables (no DELETE of every row) and clears their quality
  summaries, and a symbol's id cannot change while rows name it.
- partitions: PostgreSQL does not copy a statement trigger to a partition, so every partition of
  market_data_v2 gets its own insert check (a statement naming the partition fires only that
  one's); candle_partition_ensure, re-created here, gives it to the partitions it makes later.
- undo: the rows naming a missing symbol are counted per table first; the foreign keys come back
  only when there are none.

Limit: the delete trigger sees rows committed after its snapshot only under READ COMMITTED (the
isolation Django and every writer here use), where a real foreign key also checks them under
REPEATABLE READ.
"""

import django.db.models.deletion
from django.db import migrations, models

import etl.models
from etl.migrations._candle_tables import ENSURE_FUNCTION

TABLES = ("market_data_v2", "data_quality_metrics")
OLD_FKS = {
    "market_data_v2": "market_data_v2_symbol_id_190ea988_fk_symbols_id",
    "data_quality_metrics": "data_quality_metrics_symbol_id_ed5a6d0c_fk_symbols_id",
}

FUNCTIONS = """
CREATE OR REPLACE FUNCTION symbol_refs_missing(ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    locked bigint;
    missing bigint;
BEGIN
    -- One index probe per named symbol, each row locked as a foreign key's check locks it.
    SELECT count(*) INTO locked FROM (SELECT 1 FROM symbols s WHERE s.id = ANY (ids) FOR KEY SHARE OF s) x;
    IF locked < cardinality(ids) THEN
        SELECT u.id INTO missing FROM unnest(ids) u(id)
        WHERE NOT EXISTS (SELECT 1 FROM symbols s WHERE s.id = u.id) LIMIT 1;
        RAISE EXCEPTION 'a row names symbol %, which does not exist', missing
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('Key (symbol_id)=(%s) is not present in table "symbols".', missing);
    END IF;
END $$;

CREATE OR REPLACE FUNCTION symbol_refs_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM symbol_refs_missing(ARRAY(SELECT DISTINCT n.symbol_id::bigint FROM new_rows n));
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION symbol_refs_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM symbol_refs_missing(ARRAY[NEW.symbol_id::bigint]);
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION symbol_refs_cascade() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM market_data_v2 WHERE symbol_id = OLD.id;
    DELETE FROM data_quality_metrics WHERE symbol_id = OLD.id;
    RETURN OLD;
END $$;

CREATE OR REPLACE FUNCTION symbol_refs_id_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM market_data_v2 WHERE symbol_id = OLD.id)
       OR EXISTS (SELECT 1 FROM data_quality_metrics WHERE symbol_id = OLD.id) THEN
        RAISE EXCEPTION 'symbol % is named by candles or quality metrics: its id cannot change', OLD.id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION symbol_refs_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    full_tables text[];
BEGIN
    -- No symbol left, so no row of either table may stay: emptied as TRUNCATE empties (no
    -- DELETE over millions of rows, no dead tuples), and the quality numbers go with them (the
    -- summary triggers of a DELETE would find no market for the rows: symbols is empty).
    -- Only the tables with rows: one the same TRUNCATE named (Django's flush names them all) is
    -- empty already, and a TRUNCATE of it here would fail as "in use by active queries".
    full_tables := ARRAY(SELECT t FROM unnest(ARRAY['market_data_v2', 'data_quality_metrics']) t
                         WHERE CASE t WHEN 'market_data_v2' THEN EXISTS (SELECT 1 FROM market_data_v2)
                                      ELSE EXISTS (SELECT 1 FROM data_quality_metrics) END);
    IF cardinality(full_tables) > 0 THEN
        EXECUTE 'TRUNCATE ' || array_to_string(full_tables, ', ');
    END IF;
    DELETE FROM integrity_summary WHERE metric LIKE 'quality.%';
    DELETE FROM integrity_summary_deltas WHERE metric LIKE 'quality.%';
    RETURN NULL;
END $$;
"""

INSERT_TRIGGER = (
    "CREATE TRIGGER symbol_refs_ins AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION symbol_refs_insert();"
)

# PostgreSQL copies row triggers to partitions, not statement triggers: without its own
# symbol_refs_ins a partition takes an INSERT or COPY naming it unchecked. It fires only when the
# partition itself is the target, so a write through the parent is checked once. Partitions made
# later get it from candle_partition_ensure (etl/migrations/_candle_tables.py, re-created here).
PARTITION_TRIGGERS = """
DO $$ DECLARE part regclass; BEGIN
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'market_data_v2'::regclass LOOP
        EXECUTE format('CREATE TRIGGER symbol_refs_ins AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION symbol_refs_insert()', part);
    END LOOP;
END $$;
"""
DROP_PARTITION_TRIGGERS = """
DO $$ DECLARE part regclass; BEGIN
    FOR part IN SELECT tgrelid::regclass FROM pg_trigger
                WHERE tgname = 'symbol_refs_ins' AND tgfoid = 'symbol_refs_insert()'::regprocedure LOOP
        EXECUTE format('DROP TRIGGER symbol_refs_ins ON %s', part);
    END LOOP;
END $$;
"""

# The foreign keys validate every row when they come back, and one row naming a missing symbol
# (written with the triggers disabled, say) fails that with a bare foreign_key_violation. The
# orphans are counted first, per table, and the undo stops with what to do.
ORPHANS = """
DO $$ DECLARE t text; n bigint; found text := ''; BEGIN
    FOREACH t IN ARRAY ARRAY['market_data_v2', 'data_quality_metrics'] LOOP
        EXECUTE format('SELECT count(*) FROM %I r WHERE NOT EXISTS'
                       ' (SELECT 1 FROM symbols s WHERE s.id = r.symbol_id)', t) INTO n;
        IF n > 0 THEN
            found := found || format('%s%s rows of %s', CASE WHEN found = '' THEN '' ELSE ', ' END, n, t);
        END IF;
    END LOOP;
    IF found <> '' THEN
        RAISE EXCEPTION 'cannot undo enrichment 0013: % name a symbol that does not exist', found
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'The foreign keys it restores would reject them: delete those rows first, then migrate back.';
    END IF;
END $$;
"""

# The key by what it is, not by its name (Django's name has a hash in it).
DROP_FK = """
DO $$ DECLARE fk text; BEGIN
    FOR fk IN SELECT conname FROM pg_constraint
              WHERE conrelid = '{table}'::regclass AND contype = 'f' AND confrelid = 'symbols'::regclass LOOP
        EXECUTE format('ALTER TABLE {table} DROP CONSTRAINT %I', fk);
    END LOOP;
END $$;
"""


def _forward() -> str:
    sql = [FUNCTIONS]
    for table in TABLES:
        sql += [
            DROP_FK.format(table=table),
            INSERT_TRIGGER.format(table=table),
            f"CREATE TRIGGER symbol_refs_upd BEFORE UPDATE OF symbol_id ON {table} FOR EACH ROW"
            " WHEN (OLD.symbol_id IS DISTINCT FROM NEW.symbol_id) EXECUTE FUNCTION symbol_refs_update();",
        ]
    sql += [
        "CREATE TRIGGER symbol_refs_del BEFORE DELETE ON symbols FOR EACH ROW EXECUTE FUNCTION symbol_refs_cascade();",
        "CREATE TRIGGER symbol_refs_id BEFORE UPDATE OF id ON symbols FOR EACH ROW WHEN (OLD.id <> NEW.id)"
        " EXECUTE FUNCTION symbol_refs_id_kept();",
        "CREATE TRIGGER symbol_refs_trunc AFTER TRUNCATE ON symbols FOR EACH STATEMENT"
        " EXECUTE FUNCTION symbol_refs_truncate();",
        PARTITION_TRIGGERS,
        ENSURE_FUNCTION,
    ]
    return "\n".join(sql)


def _backward() -> str:
    sql = [
        ORPHANS,
        DROP_PARTITION_TRIGGERS,
        "DROP TRIGGER IF EXISTS symbol_refs_del ON symbols;",
        "DROP TRIGGER IF EXISTS symbol_refs_id ON symbols;",
        "DROP TRIGGER IF EXISTS symbol_refs_trunc ON symbols;",
    ]
    for table in TABLES:
        sql += [
            f"DROP TRIGGER IF EXISTS symbol_refs_ins ON {table};",
            f"DROP TRIGGER IF EXISTS symbol_refs_upd ON {table};",
            f"ALTER TABLE {table} ADD CONSTRAINT {OLD_FKS[table]} FOREIGN KEY (symbol_id) REFERENCES symbols (id)"
            " DEFERRABLE INITIALLY DEFERRED;",
        ]
    sql += [
        f"DROP FUNCTION IF EXISTS {name};"
        for name in (
            "symbol_refs_insert()",
            "symbol_refs_update()",
            "symbol_refs_cascade()",
            "symbol_refs_id_kept()",
            "symbol_refs_truncate()",
            "symbol_refs_missing(bigint[])",
        )
    ]
    return "\n".join(sql)


class Migration(migrations.Migration):
    dependencies = [("enrichment", "0012_quality_summary_triggers_grouped")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(_forward(), _backward())],
            state_operations=[
                migrations.AlterField(
                    model_name="marketdatav2",
                    name="symbol",
                    field=etl.models.IntegerForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="etl.symbol",
                        verbose_name="symbol",
                    ),
                ),
                migrations.AlterField(
                    model_name="dataqualitymetric",
                    name="symbol",
                    field=models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="etl.symbol",
                        verbose_name="symbol",
                    ),
                ),
            ],
        ),
    ]
