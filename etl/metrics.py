"""Prometheus metrics of the core, defined once.

Counters are counted in the database (`etl.events`): the work happens in
django-q2 worker processes, often on other hosts, and only web processes serve
/metrics. States (oldest running run, quality, lag, live workers) are gauges
read at scrape time, each from an indexed read of a small table.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

from django.apps import apps
from django.db import connection
from django.db.models.signals import post_migrate
from django.utils import timezone
from django_q.status import Stat
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric

from etl import events
from etl.event_triggers import NEWEST_FAMILY, event_triggers_install, register_event_trigger
from etl.events import DbCounter, DbGauge, DbHistogram, run_kind
from etl.market_lag import expected_close_missed
from etl.models import Market, RunRecord, SummaryRecount
from etl.selectors import integrity_status

log = logging.getLogger(__name__)

bootstrap_runs = DbCounter("etl_bootstrap_runs_total", "Reference-data bootstrap runs", ["result"])
pipeline_runs = DbCounter("etl_pipeline_runs_total", "Pipeline runs by final status", ["status", "trigger"])
pipeline_step_seconds = DbHistogram(
    "etl_pipeline_step_seconds", "Pipeline step duration", ["step"], buckets=(1, 5, 30, 60, 300, 900, 3600, 14400)
)
symbols_created = DbCounter(
    "etl_symbols_created_total", "Symbols created by symbol sync (or by an import, through the sync's symbols_ensure)"
)
candles_linked = DbCounter("etl_candles_linked_total", "Candles linked to their symbol by symbol sync")
# Counted by the run tables' triggers (etl.event_triggers); declared here for their help text.
runs_finished = DbCounter(
    "mytrader_runs_total",
    "Runs that reached a final status, by kind and status (a retried run counts again when it ends again)",
    ["kind", "status"],
)
run_duration = DbHistogram("mytrader_run_duration_seconds", "Duration of finished runs", ["kind"])
market_data_newest_close = DbGauge(
    NEWEST_FAMILY, "Close time (Unix seconds) of the newest candle in market_data, per market", ["market"]
)

DURATION_BUCKETS = events.DURATION_BUCKETS


def run_models() -> list:
    return [m for m in apps.get_models() if issubclass(m, RunRecord) and not m._meta.proxy]


class EventCollector:
    """Every counter, gauge and histogram counted through etl.events, from any process."""

    def describe(self):
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            samples = events.metric_samples()
        except Exception:  # a scrape must answer even when the database does not
            log.exception("event metrics could not be read")
            return
        yield from events.metric_families(samples)
        try:
            yield _market_data_lag([s for s in samples if s.family == NEWEST_FAMILY])
        except Exception:
            log.exception("market data lag could not be computed")


class StateCollector:
    """Gauges of what is the case now: runs in progress, integrity, live workers."""

    def describe(self):
        return []

    def collect(self) -> Iterator[Metric]:
        for part in (_oldest_running, _integrity, _summary_drift, _queue_workers):
            try:
                yield from part()
            except Exception:  # one unreadable part must not hide the others
                log.exception("%s could not be read", part.__name__)


def _oldest_running() -> Iterator[Metric]:
    oldest = GaugeMetricFamily(
        "mytrader_run_oldest_running_seconds",
        "Seconds since the oldest running run of each kind started",
        labels=["kind"],
    )
    now = timezone.now()
    models = run_models()
    # One query for every run table, each served by its status index: running runs are few.
    union = " UNION ALL ".join(
        f"SELECT {i}, min(started_at) FROM {connection.ops.quote_name(m._meta.db_table)}"  # noqa: S608 - model tables
        " WHERE status = 'running' AND started_at IS NOT NULL"
        for i, m in enumerate(models)
    )
    with connection.cursor() as cur:
        cur.execute(union)
        started = dict(cur.fetchall())
    for i, model in enumerate(models):
        first = started.get(i)
        oldest.add_metric([run_kind(model)], max(0.0, (now - first).total_seconds()) if first else 0.0)
    yield oldest


def _integrity() -> Iterator[Metric]:
    """The integrity indicators as they are now, from the integrity summaries (a few rows)."""
    status = integrity_status()
    overall = status["overall"]
    unlinked = GaugeMetricFamily("mytrader_candles_without_symbol", "Candles in market_data with no symbol")
    unlinked.add_metric([], overall["candles_without_symbol"])
    yield unlinked
    quality = GaugeMetricFamily("mytrader_data_quality_score", "Overall data quality 0-100 (integrity summaries)")
    if overall["overall_quality"] is not None:
        quality.add_metric([], overall["overall_quality"])
    yield quality
    consistency = GaugeMetricFamily(
        "mytrader_asset_class_quality_score",
        "Percent of candles whose asset class equals their symbol's (integrity summaries); no market label: all",
        labels=["market"],
    )
    if overall["asset_class_consistency"] is not None:
        consistency.add_metric([], overall["asset_class_consistency"])  # the overall series has no label
    for market, values in status["markets"].items():
        if values["asset_class_consistency"] is not None:
            consistency.add_metric([market], values["asset_class_consistency"])
    yield consistency


def _summary_drift() -> Iterator[Metric]:
    drift = GaugeMetricFamily(
        "mytrader_summary_drift_values",
        "Integrity summary values the newest finished recount found different from its count, by source",
        labels=["source"],
    )
    last = SummaryRecount.objects.filter(status="succeeded").order_by("-finished_at", "-id").first()
    for source, figures in sorted((last.result if last else {}).items()):
        drift.add_metric([source], figures.get("drift", 0))
    yield drift


def _queue_workers() -> Iterator[Metric]:
    workers = GaugeMetricFamily("mytrader_queue_workers", "django-q2 worker processes of the clusters that report")
    workers.add_metric([], sum(len(stat.workers or []) for stat in Stat.get_all()))
    yield workers


def _market_data_lag(newest: list) -> Metric:
    lag = GaugeMetricFamily(
        "mytrader_market_data_lag_seconds",
        "Seconds since the first bar the market's trading sessions expected and market_data lacks (0: up to date)",
        labels=["market"],
    )
    newest_by_market = {s.labels.get("market"): s.value for s in newest}
    now = timezone.now()
    for market in Market.objects.filter(is_active=True).prefetch_related("sessions"):
        if market.code not in newest_by_market:
            continue  # no candle stored yet: nothing to lag behind
        newest_close = datetime.fromtimestamp(newest_by_market[market.code], tz=UTC)
        missed = expected_close_missed(market=market, newest_close=newest_close, now=now)
        lag.add_metric([market.code], 0.0 if missed is None else (now - missed).total_seconds())
    return lag


_registered: set[str] = set()


def register_collector(name: str, collector) -> None:
    """Register a scrape-time collector once per process (apps call it from
    ready()), with the `event_triggers` (etl.event_triggers.EventTrigger) that
    count its families, if it declares any."""
    if name not in _registered:
        REGISTRY.register(collector)
        _registered.add(name)
        _COLLECTORS[name] = collector
        for trigger in getattr(collector, "event_triggers", ()):
            register_event_trigger(trigger)


_COLLECTORS: dict[str, object] = {}


def registered_collectors() -> dict[str, object]:
    """The database-derived collectors, for a /metrics that builds its own registry."""
    return dict(_COLLECTORS)


def register_collectors() -> None:
    """Called once from EtlConfig.ready()."""
    register_collector("etl.events", EventCollector())
    register_collector("etl.state", StateCollector())
    # Once per migrate, after every app's tables exist (post_migrate is sent per app, after them all).
    post_migrate.connect(event_triggers_install, sender=apps.get_app_config("etl"), dispatch_uid="etl.triggers")
