"""Prune logs, task results and other records past their retention age."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Max
from django.utils import timezone
from django_q.models import Failure, Success

from etl.models import DeadLetter, PipelineRun, RunStatus
from etl.retention import registered_pruners


@dataclass(frozen=True, slots=True)
class PruneResult:
    days: int
    deleted: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def retention_prune(*, days: int | None = None) -> PruneResult:
    """Delete, table by table, what each registered pruner says is older than
    `days` (default: the RETENTION_DAYS setting). Each pruner is its own
    transaction, so one failure does not undo the others' work."""
    days = settings.RETENTION_DAYS if days is None else days
    cutoff = timezone.now() - timedelta(days=days)
    deleted = {name: fn(cutoff) for name, fn in registered_pruners().items()}
    return PruneResult(days=days, deleted=deleted)


def prune_task_results(cutoff) -> int:
    return (
        Success.objects.filter(stopped__lt=cutoff).delete()[0] + Failure.objects.filter(stopped__lt=cutoff).delete()[0]
    )


def prune_resolved_dead_letters(cutoff) -> int:
    return DeadLetter.objects.filter(resolved_at__lt=cutoff).delete()[0]


def prune_pipeline_runs(cutoff) -> int:
    """Delete finished pipeline runs (and their steps) created before `cutoff`,
    keeping the latest run of each trigger (what "last run" pages show)."""
    latest = PipelineRun.objects.values("trigger").annotate(last=Max("id")).values_list("last", flat=True)
    old = PipelineRun.objects.filter(created_at__lt=cutoff).exclude(status__in=[RunStatus.QUEUED, RunStatus.RUNNING])
    return old.exclude(pk__in=list(latest)).delete()[0]
