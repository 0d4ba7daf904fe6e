from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from corrections import services
from corrections.models import CorrectionBackup, CorrectionRun
from corrections.retention import prune_correction_backups

pytestmark = pytest.mark.django_db


def _run(*, validate: bool) -> CorrectionRun:
    run = services.correction_run_create(requested_by="alice", overwrite_mismatched=True)
    services.correction_execute(run=run)
    if validate:
        services.correction_validate(run=run)
    return run


def test_only_old_validated_backups_are_pruned(world, settings):
    settings.CORRECTION_ROLLBACK_WINDOW_DAYS = 30
    validated = _run(validate=True)
    assert CorrectionBackup.objects.filter(run=validated).exists()
    long_ago = timezone.now() - timedelta(days=200)

    # Inside the rollback window: kept, whatever the retention age says.
    assert prune_correction_backups(timezone.now()) == 0

    CorrectionRun.objects.filter(pk=validated.pk).update(finished_at=long_ago)
    kept = CorrectionBackup.objects.filter(run=validated).count()
    assert prune_correction_backups(timezone.now() - timedelta(days=90)) == kept
    assert not CorrectionBackup.objects.filter(run=validated).exists()


def test_an_unvalidated_run_keeps_its_backup(world):
    run = _run(validate=False)
    CorrectionRun.objects.filter(pk=run.pk).update(finished_at=timezone.now() - timedelta(days=400))
    assert prune_correction_backups(timezone.now()) == 0
    assert CorrectionBackup.objects.filter(run=run).exists()
