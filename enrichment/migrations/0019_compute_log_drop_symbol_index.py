"""enrichment_compute_log without its index on `symbol_id` alone: `compute_log_sym_tf`
(symbol_id, timeframe, created_at DESC) leads with it and serves what it served (a series' logs,
the cascade from symbols). The feature step writes one log row per series a run, in symbol
order, so each index of the log costs a leaf page per row once the log outgrows the cache;
the dropped one also held about 20 bytes a row. The foreign key itself stays."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("enrichment", "0018_fill_status_quality_sums"),
        ("etl", "0019_metric_delta_obs_choice"),
    ]

    operations = [
        migrations.AlterField(
            model_name="enrichmentcomputelog",
            name="symbol",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="etl.symbol",
                verbose_name="symbol",
            ),
        ),
    ]
