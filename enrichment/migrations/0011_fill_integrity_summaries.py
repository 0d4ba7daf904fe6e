"""The initial fill of enrichment's integrity summaries, counted once from its tables.
Reverse: empty them."""

from django.db import migrations

SOURCES = ["series", "quality", "backfill", "fetch", "compute"]


def fill(apps, schema_editor):
    # The service, not a frozen copy: it sums the functions migration 0008 made, as the triggers do.
    from etl.services.summaries import summary_fill

    summary_fill(sources=SOURCES)


def empty(apps, schema_editor):
    for prefix in SOURCES:
        schema_editor.execute("DELETE FROM integrity_summary WHERE metric LIKE %s", [prefix + ".%"])
        schema_editor.execute("DELETE FROM integrity_summary_deltas WHERE metric LIKE %s", [prefix + ".%"])


class Migration(migrations.Migration):
    dependencies = [("enrichment", "0010_integrity_summary_triggers")]

    operations = [migrations.RunPython(fill, empty)]
