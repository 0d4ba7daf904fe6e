"""Prometheus metrics of the core, defined once."""

from prometheus_client import Counter

bootstrap_runs = Counter("etl_bootstrap_runs_total", "Reference-data bootstrap runs", ["result"])
