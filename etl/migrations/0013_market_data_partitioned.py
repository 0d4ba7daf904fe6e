"""market_data becomes range-partitioned by ts, one partition a year, with sized columns and
only the indexes a query needs; the file path is kept once, on the import-file row
(`import_file_id` replaces `source_file` and `import_job_id`; `created_at` goes).
The database side is SQL (etl/migrations/_candle_tables.py, docs/storage.md); Django's
state changes alongside."""

import django.contrib.postgres.indexes
import django.db.models.deletion
from django.db import migrations, models

import etl.models
from etl.migrations._candle_tables import market_data_backward, market_data_forward


class Migration(migrations.Migration):
    # One transaction: a failure leaves the old table as it was.
    atomic = True

    dependencies = [
        ("etl", "0012_candle_table_labels_translatable"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(market_data_forward(), market_data_backward())],
            state_operations=[
                migrations.RemoveIndex(
                    model_name="marketdata",
                    name="market_data_symbol_tf_ts",
                ),
                migrations.RemoveIndex(
                    model_name="marketdata",
                    name="market_data_market_ac",
                ),
                migrations.RemoveIndex(
                    model_name="marketdata",
                    name="market_data_ts",
                ),
                migrations.RemoveField(
                    model_name="marketdata",
                    name="created_at",
                ),
                migrations.RemoveField(
                    model_name="marketdata",
                    name="import_job_id",
                ),
                migrations.RemoveField(
                    model_name="marketdata",
                    name="source_file",
                ),
                migrations.AddField(
                    model_name="marketdata",
                    name="import_file_id",
                    field=models.IntegerField(
                        blank=True,
                        help_text="import_files.id of the file it came from",
                        null=True,
                        verbose_name="import file",
                    ),
                ),
                migrations.AlterField(
                    model_name="marketdata",
                    name="symbol",
                    field=etl.models.IntegerForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        to="etl.symbol",
                        verbose_name="symbol",
                    ),
                ),
                migrations.AddIndex(
                    model_name="marketdata",
                    index=models.Index(fields=["symbol", "timeframe"], name="market_data_symbol_tf"),
                ),
                migrations.AddIndex(
                    model_name="marketdata",
                    index=django.contrib.postgres.indexes.BrinIndex(
                        fields=["id"], name="market_data_id_brin", pages_per_range=32, autosummarize=True
                    ),
                ),
            ],
        ),
    ]
