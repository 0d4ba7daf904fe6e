"""The symbol checks of 0013 on every partition, the TRUNCATE of symbols by TRUNCATE, and
candle_partition_ensure giving new partitions the check, for a database that applied 0013
before it had them (0013 was extended in place; on a new database this finds it all done).

Idempotent: the functions are CREATE OR REPLACE, each partition's trigger is dropped if there
and made again. Undo: nothing (0013's undo removes the checks, partitions' included).
"""

from importlib import import_module

from django.db import migrations

from etl.migrations._candle_tables import ENSURE_FUNCTION

FUNCTIONS = import_module("enrichment.migrations.0013_symbol_checks_per_statement").FUNCTIONS

PARTITION_TRIGGERS = """
DO $$ DECLARE part regclass; BEGIN
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'market_data_v2'::regclass LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS symbol_refs_ins ON %s', part);
        EXECUTE format('CREATE TRIGGER symbol_refs_ins AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION symbol_refs_insert()', part);
    END LOOP;
END $$;
"""


class Migration(migrations.Migration):
    dependencies = [("enrichment", "0014_quality_metrics_natural_key")]

    operations = [
        migrations.RunSQL("\n".join([FUNCTIONS, PARTITION_TRIGGERS, ENSURE_FUNCTION]), migrations.RunSQL.noop),
    ]
