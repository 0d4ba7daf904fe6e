"""market_data_v2 becomes range-partitioned by ts, one partition a year, with sized columns
(symbol_id int4, no created_at) and its primary key the natural key (symbol_id, timeframe, ts).
The database side is SQL (enrichment/migrations/_v2_table.py, docs/storage.md)."""

import django.contrib.postgres.indexes
import django.db.models.deletion
from django.db import migrations

import etl.models
from enrichment.migrations._v2_table import backward, forward


class Migration(migrations.Migration):
    dependencies = [
        ("enrichment", "0007_candle_table_labels_translatable"),
        ("etl", "0013_market_data_partitioned"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(forward(), backward())],
            state_operations=[
                migrations.RemoveField(
                    model_name='marketdatav2',
                    name='created_at',
                ),
                migrations.AlterField(
                    model_name='marketdatav2',
                    name='symbol',
                    field=etl.models.IntegerForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='etl.symbol', verbose_name='symbol'),
                ),
                migrations.AddIndex(
                    model_name='marketdatav2',
                    index=django.contrib.postgres.indexes.BrinIndex(fields=['id'], name='market_data_v2_id_brin', pages_per_range=32, autosummarize=True),
                ),
            ],
        ),
    ]
