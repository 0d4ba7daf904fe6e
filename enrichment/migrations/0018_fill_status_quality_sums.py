"""Fill `enrichment_status.quality_sum` / `quality_n` (migration 0017) from every series' rows, in
one pass over market_data_v2, where the status row's count and ends equal the rows' (a row that
does not is left NULL: the next feature run recounts it). Without it, the first hourly run after
the upgrade would count every series' rows once."""

from django.db import migrations

FILL = """
UPDATE enrichment_status es SET quality_sum = a.quality_sum, quality_n = a.quality_n
FROM (
    SELECT symbol_id, timeframe, count(*) AS n, min(ts) AS first_ts, max(ts) AS last_ts,
           sum(quality_score::numeric) AS quality_sum, count(quality_score) AS quality_n
    FROM market_data_v2 GROUP BY symbol_id, timeframe
) a
WHERE a.symbol_id = es.symbol_id AND a.timeframe = es.timeframe
  AND a.n = es.rows AND a.first_ts = es.first_ts AND a.last_ts = es.last_ts
"""


class Migration(migrations.Migration):
    dependencies = [
        ("enrichment", "0017_status_quality_sums_and_probe_indexes"),
    ]

    operations = [
        migrations.RunSQL(FILL, "UPDATE enrichment_status SET quality_sum = NULL, quality_n = NULL"),
    ]
