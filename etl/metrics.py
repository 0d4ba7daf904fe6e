"""Prometheus metrics of the core, defined once."""

from prometheus_client import Counter, Histogram

bootstrap_runs = Counter("etl_bootstrap_runs_total", "Reference-data bootstrap runs", ["result"])

pipeline_runs = Counter("etl_pipeline_runs_total", "Pipeline runs by final status", ["status", "trigger"])
pipeline_step_seconds = Histogram(
    "etl_pipeline_step_seconds", "Pipeline step duration", ["step"], buckets=(1, 5, 30, 60, 300, 900, 3600, 14400)
)
symbols_created = Counter("etl_symbols_created_total", "Symbols created by symbol sync")
candles_linked = Counter("etl_candles_linked_total", "Candles linked to their symbol by symbol sync")
