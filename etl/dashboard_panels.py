"""The core's dashboard panels: running work, failures, the queue."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.apps import apps
from django.db import connection
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.translation import gettext
from django_q.brokers import get_broker
from django_q.models import Failure, Schedule, Success

from etl.events import run_kind
from etl.models import IntegritySnapshot, MarketData, PipelineRun, RunRecord, Symbol
from etl.selectors import integrity_status
from etl.services.integrity import severity_label
from etl.services.pipeline import SUCCEEDED_WITH_WARNINGS, outcome_label, run_gates_breached, run_outcome
from etl.summaries import runs_last_day


def _changelist(model, query: str = "") -> str | None:
    try:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    except NoReverseMatch:
        return None
    return f"{url}?{query}" if query else url


def _run_models() -> list:
    return [m for m in apps.get_models() if issubclass(m, RunRecord)]


# Every run table's active runs (newest ten) in one query, each served by its status index.
_ACTIVE_SQL = """
SELECT {index}, (SELECT array_agg(id ORDER BY id DESC) FROM (
            SELECT id FROM {table} WHERE status IN ('running', 'queued') ORDER BY id DESC LIMIT 10) a)
"""


def runs_context(request: HttpRequest) -> dict[str, Any]:
    """Running and queued work of every kind, with progress, and the runs and failures of the
    last 24 h (whole hours, from the integrity summaries: an hourly run at 100,000 symbols
    creates 100,000 import-file runs an hour, which a count of the run tables would read)."""
    models = _run_models()
    union = " UNION ALL ".join(
        _ACTIVE_SQL.format(index=i, table=connection.ops.quote_name(m._meta.db_table)) for i, m in enumerate(models)
    )
    with connection.cursor() as cur:
        cur.execute(union)
        rows = {i: ids or [] for i, ids in cur.fetchall()}
    since, counted = runs_last_day()
    active, kinds = [], []
    for i, model in enumerate(models):
        ids = rows.get(i, [])
        for run in model.objects.filter(pk__in=ids).order_by("-pk") if ids else ():
            try:
                url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[run.pk])
            except NoReverseMatch:
                url = None
            active.append({"kind": model._meta.verbose_name, "run": run, "url": url})
        counts = counted.get(run_kind(model), {"created": 0, "failed": 0})
        kinds.append(
            {
                "kind": model._meta.verbose_name_plural,
                "total": counts["created"],
                "failed": counts["failed"],
                "url": _changelist(model),
                "failed_url": _changelist(model, "status__exact=failed"),
            }
        )
    return {"active": active, "kinds": kinds, "since": since}


def queue_context(request: HttpRequest) -> dict[str, Any]:
    """Queue depth, failed tasks and schedules of django-q2."""

    since = timezone.now() - timedelta(hours=24)
    try:
        queued = get_broker().queue_size()
    except Exception:  # a broker that is down shows as unknown, the health page says why
        queued = None
    return {
        "queued": queued,
        "failed_24h": Failure.objects.filter(stopped__gte=since).count(),
        "succeeded_24h": Success.objects.filter(stopped__gte=since).count(),
        "schedules": Schedule.objects.count(),
        "next_schedules": Schedule.objects.exclude(next_run=None).order_by("next_run")[:5],
        "urls": {
            "queued": reverse("admin:django_q_ormq_changelist"),
            "failed": reverse("admin:django_q_failure_changelist"),
            "succeeded": reverse("admin:django_q_success_changelist"),
            "schedules": reverse("admin:django_q_schedule_changelist"),
        },
    }


def integrity_context(request: HttpRequest) -> dict[str, Any]:
    """Current indicators (from the integrity summaries: a few rows) with links, and
    their trend over the last 30 days (the hourly snapshots) as a plotly figure."""

    status = integrity_status()
    overall = status["overall"]
    latest = None
    if overall["candles"] or overall["symbols_active"] or status["markets"]:
        latest = {**overall, "taken_at": timezone.now()}
    markets = [{"market": code, **values} for code, values in status["markets"].items()]
    since = timezone.now() - timedelta(days=30)
    points = list(
        IntegritySnapshot.objects.filter(market="", taken_at__gte=since)
        .order_by("taken_at")
        .values("taken_at", "overall_quality", "symbol_coverage", "enrichment_coverage", "asset_class_consistency")
    )
    series = [
        ("overall_quality", gettext("overall quality")),
        ("symbol_coverage", gettext("symbol coverage %")),
        ("asset_class_consistency", gettext("asset-class consistency %")),
        ("enrichment_coverage", gettext("enrichment coverage %")),
    ]
    figure = {
        "data": [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": label,
                "x": [p["taken_at"].isoformat() for p in points],
                "y": [p[key] for p in points],
            }
            for key, label in series
        ],
        "layout": {
            "margin": {"l": 40, "r": 10, "t": 10, "b": 40},
            "yaxis": {"range": [0, 105]},
            "legend": {"orientation": "h"},
            "height": 260,
        },
    }
    return {
        "latest": latest,
        "markets": markets,
        "figure": figure if points else None,
        "urls": {
            "unlinked": _changelist(MarketData, "symbol__isnull=True"),
            "symbols": _changelist(Symbol),
            "not_enriched": _changelist(Symbol, "enriched_at__isnull=True"),
            "snapshots": _changelist(IntegritySnapshot),
        },
    }


def pipeline_context(request: HttpRequest) -> dict[str, Any]:
    """The last pipeline runs with their steps, outcome and breached quality gates."""

    runs = PipelineRun.objects.prefetch_related("step_runs").order_by("-created_at", "-id")[:6]
    return {
        "runs": [
            {
                "run": run,
                "outcome": (outcome := run_outcome(run)),
                "outcome_label": outcome_label(outcome),
                "breached": [{**g, "severity_label": severity_label(g["severity"])} for g in run_gates_breached(run)],
            }
            for run in runs
        ],
        "warned": SUCCEEDED_WITH_WARNINGS,
        "url": _changelist(PipelineRun),
        "failed_url": _changelist(PipelineRun, "status__exact=failed"),
    }
