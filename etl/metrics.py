"""Prometheus metrics of the core, defined once.

Run metrics are read from the run tables at scrape time rather than counted in
memory: the work happens in django-q2 worker processes, often on other hosts,
and only the web process serves /metrics. The tables are the one place every
process writes to, so the figures are the same whichever process is scraped.
"""

from __future__ import annotations

import logging

from django.apps import apps
from django.db import connection
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from etl.models import IntegritySnapshot, RunRecord

log = logging.getLogger(__name__)

bootstrap_runs = Counter("etl_bootstrap_runs_total", "Reference-data bootstrap runs", ["result"])

pipeline_runs = Counter("etl_pipeline_runs_total", "Pipeline runs by final status", ["status", "trigger"])
pipeline_step_seconds = Histogram(
    "etl_pipeline_step_seconds", "Pipeline step duration", ["step"], buckets=(1, 5, 30, 60, 300, 900, 3600, 14400)
)
symbols_created = Counter("etl_symbols_created_total", "Symbols created by symbol sync")
candles_linked = Counter("etl_candles_linked_total", "Candles linked to their symbol by symbol sync")

DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 1800, 3600, 7200)


def run_kind(model) -> str:
    """The low-cardinality `kind` label of a run model (its `metrics_kind`)."""
    return getattr(model, "metrics_kind", model._meta.model_name)


class RunCollector:
    """mytrader_runs_total{kind,status}, mytrader_run_duration_seconds{kind}
    (finished runs) and the core's data-integrity gauges."""

    def describe(self):
        return []

    def collect(self):
        runs = CounterMetricFamily("mytrader_runs", "Runs recorded, by kind and status", labels=["kind", "status"])
        durations = HistogramMetricFamily("mytrader_run_duration_seconds", "Duration of finished runs", labels=["kind"])
        try:
            for model in apps.get_models():
                if not issubclass(model, RunRecord):
                    continue
                # Table names come from our own models, never from input.
                kind, table = run_kind(model), connection.ops.quote_name(model._meta.db_table)
                with connection.cursor() as cur:
                    cur.execute(f"SELECT status, count(*) FROM {table} GROUP BY status")  # noqa: S608
                    for status, n in cur.fetchall():
                        runs.add_metric([kind, status], n)
                    buckets = ", ".join(f"count(*) FILTER (WHERE d <= {b})" for b in DURATION_BUCKETS)
                    cur.execute(
                        f"SELECT {buckets}, count(*), coalesce(sum(d), 0) FROM ("  # noqa: S608
                        f" SELECT extract(epoch FROM finished_at - started_at) AS d FROM {table}"
                        f" WHERE finished_at IS NOT NULL AND started_at IS NOT NULL) t"
                    )
                    *counts, total, total_sum = cur.fetchone()
                durations.add_metric(
                    [kind],
                    [(str(float(b)), c) for b, c in zip(DURATION_BUCKETS, counts, strict=True)] + [("+Inf", total)],
                    float(total_sum),
                )
            yield runs
            yield durations
            yield from self._integrity()
        except Exception:  # a scrape must answer even when the database does not
            log.exception("run metrics could not be read")

    def _integrity(self):
        unlinked = GaugeMetricFamily("mytrader_candles_without_symbol", "Candles in market_data with no symbol")
        with connection.cursor() as cur:
            # Served by the partial index market_data_unlinked.
            cur.execute("SELECT count(*) FROM market_data WHERE symbol_id IS NULL")
            unlinked.add_metric([], cur.fetchone()[0])
        yield unlinked
        latest = IntegritySnapshot.objects.filter(market="").order_by("-taken_at").first()
        quality = GaugeMetricFamily(
            "mytrader_data_quality_score", "Overall data quality 0-100 (latest integrity snapshot)"
        )
        if latest is not None and latest.overall_quality is not None:
            quality.add_metric([], latest.overall_quality)
        yield quality


_registered: set[str] = set()


def register_collector(name: str, collector) -> None:
    """Register a scrape-time collector once per process (apps call it from ready())."""
    if name not in _registered:
        REGISTRY.register(collector)
        _registered.add(name)


def register_collectors() -> None:
    """Called once from EtlConfig.ready()."""
    register_collector("etl.runs", RunCollector())
