"""Correction backups are kept while a rollback may still be wanted."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from corrections.models import CorrectionBackup, CorrectionRun, Phase


def prune_correction_backups(cutoff) -> int:
    """Delete the backups of runs that were validated (or rolled back) and
    finished before both `cutoff` and the rollback window
    (CORRECTION_ROLLBACK_WINDOW_DAYS). A run that was only executed keeps its
    backup: it has not been checked, so it may still need rolling back."""

    window_end = timezone.now() - timedelta(days=settings.CORRECTION_ROLLBACK_WINDOW_DAYS)
    before = min(cutoff, window_end)
    runs = CorrectionRun.objects.filter(
        Q(phase=Phase.VALIDATED, finished_at__lt=before) | Q(phase=Phase.ROLLED_BACK, rolled_back_at__lt=before)
    )
    return CorrectionBackup.objects.filter(run__in=runs).delete()[0]
