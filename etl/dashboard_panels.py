"""The core's dashboard panels: running work, failures, the queue."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.apps import apps
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from etl.models import RunRecord, RunStatus


def _changelist(model, query: str = "") -> str | None:
    try:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    except NoReverseMatch:
        return None
    return f"{url}?{query}" if query else url


def _run_models() -> list:
    return [m for m in apps.get_models() if issubclass(m, RunRecord)]


def runs_context(request: HttpRequest) -> dict[str, Any]:
    """Running and queued work of every kind, with progress, and failures of the last 24 h."""
    since = timezone.now() - timedelta(hours=24)
    active, kinds = [], []
    for model in _run_models():
        for run in model.objects.filter(status__in=[RunStatus.RUNNING, RunStatus.QUEUED]).order_by("-pk")[:10]:
            try:
                url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[run.pk])
            except NoReverseMatch:
                url = None
            active.append({"kind": model._meta.verbose_name, "run": run, "url": url})
        recent = model.objects.filter(created_at__gte=since)
        kinds.append(
            {
                "kind": model._meta.verbose_name_plural,
                "total": recent.count(),
                "failed": recent.filter(status=RunStatus.FAILED).count(),
                "url": _changelist(model),
                "failed_url": _changelist(model, "status__exact=failed"),
            }
        )
    return {"active": active, "kinds": kinds}


def queue_context(request: HttpRequest) -> dict[str, Any]:
    """Queue depth, failed tasks and schedules of django-q2."""
    from django_q.brokers import get_broker
    from django_q.models import Failure, Schedule, Success

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
