"""Prometheus metrics of the correction (the old system's names), defined once.

Counted in the database (etl.events), so what a worker counts is what every
web process exports. Counters are exported with `_total`, so
`assetclass_operations_started` is `assetclass_operations_started_total`. The
label is the operation: analyze, preview, execute, validate, rollback.
"""

from etl.events import DbCounter, DbGauge, DbHistogram

operations_started = DbCounter(
    "assetclass_operations_started", "Asset-class correction operations started", ["operation"]
)
operations_completed = DbCounter(
    "assetclass_operations_completed",
    "Asset-class correction operations finished, by result (succeeded, failed, cancelled)",
    ["operation", "result"],
)
records_processed = DbCounter(
    "assetclass_records_processed", "Candles changed by execute or restored by rollback", ["operation"]
)
operation_duration = DbHistogram(
    "assetclass_operation_duration_seconds",
    "Duration of asset-class correction operations",
    ["operation"],
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 1800, 7200),
)
data_quality_score = DbGauge(
    "assetclass_data_quality_score", "Percent of candles whose asset class equals their symbol's (last analysis)"
)
records_needing_correction = DbGauge(
    "assetclass_records_needing_correction", "Candles with a null, empty or mismatched asset class (last analysis)"
)
