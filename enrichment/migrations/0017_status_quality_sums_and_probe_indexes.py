"""The hourly feature step without a pass over every stored row (docs/pipeline.md, "The hourly
run").

- `enrichment_status.quality_sum` / `quality_n`: the sum (numeric: added exactly, run after run)
  and count of the series' non-NULL quality scores, kept by every writer of the status row with
  its `rows`, so that a series that only got bars after its stored ones is updated from its row
  and its new bars. NULL: not known, the next run counts them.
- Two partial indexes of market_data_v2, each empty or nearly so, that answer in one probe what the
  pass read every row for: the series' first stale row (`features_revision IS DISTINCT FROM
  revision`: rows written without features or restated, until the feature step computes them), and
  whether it has funding observations (`funding_rate IS NOT NULL`: perpetual futures only).
"""

from django.db import migrations, models

import enrichment.candles.models

INDEXES = """
CREATE INDEX market_data_v2_stale ON market_data_v2 (symbol_id, timeframe, ts)
    WHERE features_revision IS DISTINCT FROM revision;
CREATE INDEX market_data_v2_funding ON market_data_v2 (symbol_id, timeframe, ts)
    WHERE funding_rate IS NOT NULL;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("enrichment", "0016_status_completeness_sums"),
    ]

    operations = [
        migrations.AddField(
            model_name="enrichmentstatus",
            name="quality_sum",
            field=enrichment.candles.models.NumericField(
                blank=True,
                help_text="sum of the rows' quality scores (numeric: exact)",
                null=True,
                verbose_name="quality sum",
            ),
        ),
        migrations.AddField(
            model_name="enrichmentstatus",
            name="quality_n",
            field=models.BigIntegerField(
                blank=True, help_text="rows with a quality score", null=True, verbose_name="scored rows"
            ),
        ),
        migrations.RunSQL(INDEXES, "DROP INDEX market_data_v2_stale; DROP INDEX market_data_v2_funding;"),
    ]
