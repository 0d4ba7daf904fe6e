"""Import history past its retention age: finished jobs (with their files and
rejected rows) and rejected rows of kept jobs."""

from __future__ import annotations

from django.db.models import Max

from batchimport.models import TERMINAL, ImportJob, RejectedRow


def prune_import_jobs(cutoff) -> int:
    """Delete finished top-level jobs created before `cutoff` with their child jobs,
    files and rejected rows, keeping the latest job of each kind."""
    latest = (
        ImportJob.objects.filter(parent=None).values("kind").annotate(last=Max("id")).values_list("last", flat=True)
    )
    old = ImportJob.objects.filter(parent=None, created_at__lt=cutoff, status__in=TERMINAL)
    return old.exclude(pk__in=list(latest)).delete()[0]


def prune_rejected_rows(cutoff) -> int:
    """Rejected rows older than `cutoff`, also of the jobs that are kept."""
    return RejectedRow.objects.filter(created_at__lt=cutoff).delete()[0]
