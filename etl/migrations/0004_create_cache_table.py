"""The database cache table (login throttling, when no Redis is configured) is
created by `migrate` itself, so no setup step can be missed."""

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    # createcachetable is idempotent and does nothing for non-database caches.
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("etl", "0003_integrity_snapshots")]

    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
