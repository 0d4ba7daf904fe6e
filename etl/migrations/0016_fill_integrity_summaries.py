"""The initial fill of the integrity summaries: candles and symbols counted once from
`market_data` and `symbols` (a scan, here only). Reverse: empty them. (The fold and
recount schedules are reference data: the bootstrap creates them, like etl's others.)"""

from django.db import migrations


def fill(apps, schema_editor):
    # The service, not a frozen copy: it counts with the SQL functions migration 0014 made,
    # the same ones the triggers use, so the fill and the triggers cannot disagree.
    from etl.services.summaries import summary_fill

    summary_fill(sources=["candles", "symbols"])


def empty(apps, schema_editor):
    schema_editor.execute(
        "DELETE FROM integrity_summary WHERE metric LIKE 'candles.%%' OR metric LIKE 'symbols.%%';"
        "DELETE FROM integrity_summary_deltas WHERE metric LIKE 'candles.%%' OR metric LIKE 'symbols.%%';"
        "DELETE FROM integrity_symbol_tallies; DELETE FROM integrity_symbol_tally_deltas;"
        "DELETE FROM integrity_unlinked_pairs; DELETE FROM integrity_unlinked_pair_deltas;"
    )


class Migration(migrations.Migration):
    dependencies = [("etl", "0015_integrity_summary_triggers")]

    operations = [migrations.RunPython(fill, empty)]
