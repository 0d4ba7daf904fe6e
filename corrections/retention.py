"""Correction backups are kept while a rollback may still be wanted, and the
finished runs themselves until they are past the retention age too."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from corrections.models import CorrectionBackup, CorrectionRun, Phase


def _closed_before(cutoff: datetime) -> QuerySet[CorrectionRun]:
    """Runs validated (or rolled back) before both `cutoff` and the rollback
    window (CORRECTION_ROLLBACK_WINDOW_DAYS): nothing can want their backup.
    A run that was only executed has not been checked, so it may still need
    rolling back: it never qualifies."""
    window_end = timezone.now() - timedelta(days=settings.CORRECTION_ROLLBACK_WINDOW_DAYS)
    before = min(cutoff, window_end)
    return CorrectionRun.objects.filter(
        Q(phase=Phase.VALIDATED, finished_at__lt=before) | Q(phase=Phase.ROLLED_BACK, rolled_back_at__lt=before)
    )


def prune_correction_backups(cutoff: datetime) -> int:
    """Delete the backups of the runs `_closed_before(cutoff)`; returns backup rows deleted."""
    return CorrectionBackup.objects.filter(run__in=_closed_before(cutoff)).delete()[0]


def prune_correction_runs(cutoff: datetime) -> int:
    """Delete the runs `_closed_before(cutoff)` (their backups first, one set-based
    delete), keeping the latest run (what "last correction" pages show); returns runs deleted."""
    latest = CorrectionRun.objects.order_by("-id").values_list("id", flat=True).first()
    runs = _closed_before(cutoff).exclude(pk=latest)
    CorrectionBackup.objects.filter(run__in=runs).delete()
    return runs.delete()[1].get(CorrectionRun._meta.label, 0)
