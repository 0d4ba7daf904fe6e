from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from corrections import services
from corrections.models import CorrectionBackup, CorrectionRun, Phase
from corrections.retention import prune_correction_backups, prune_correction_runs
from etl.services.retention import retention_prune

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


def test_old_closed_runs_are_pruned_but_the_latest_and_open_ones_are_kept(world, settings):
    settings.CORRECTION_ROLLBACK_WINDOW_DAYS = 30
    long_ago = timezone.now() - timedelta(days=200)
    # The first run does the work (so it has the backup); it is never validated.
    old_unvalidated = _run(validate=False)
    assert CorrectionBackup.objects.filter(run=old_unvalidated).exists()
    rolled_back = services.correction_run_create(requested_by="alice", overwrite_mismatched=True)
    CorrectionRun.objects.filter(pk=rolled_back.pk).update(phase=Phase.ROLLED_BACK, rolled_back_at=long_ago)
    old_validated, recent, latest = (_run(validate=True) for _ in range(3))
    CorrectionRun.objects.filter(pk__in=[old_validated.pk, old_unvalidated.pk, latest.pk]).update(finished_at=long_ago)
    assert prune_correction_runs(timezone.now() - timedelta(days=90)) == 2
    kept = set(CorrectionRun.objects.values_list("pk", flat=True))
    assert old_validated.pk not in kept and rolled_back.pk not in kept
    # Unvalidated (its rollback may still be wanted), inside the window, or the latest: kept.
    assert kept == {old_unvalidated.pk, recent.pk, latest.pk}
    assert CorrectionBackup.objects.filter(run=old_unvalidated).exists()


def test_the_latest_run_is_kept_however_old(world, settings):
    run = _run(validate=True)
    CorrectionRun.objects.filter(pk=run.pk).update(finished_at=timezone.now() - timedelta(days=400))
    assert prune_correction_runs(timezone.now()) == 0
    assert CorrectionRun.objects.filter(pk=run.pk).exists()


def test_the_retention_prune_reports_the_runs_it_removed(world):
    for _ in range(2):
        _run(validate=True)
    CorrectionRun.objects.update(finished_at=timezone.now() - timedelta(days=400))
    result = retention_prune(days=30)
    assert result.deleted["correction_runs"] == 1
    assert result.deleted["correction_backups"] > 0
    assert CorrectionRun.objects.count() == 1


def test_a_pruned_run_takes_its_backup_with_it(world):
    first, _latest = _run(validate=True), _run(validate=True)
    assert CorrectionBackup.objects.filter(run=first).exists()
    CorrectionRun.objects.update(finished_at=timezone.now() - timedelta(days=400))
    assert prune_correction_runs(timezone.now()) == 1
    assert not CorrectionRun.objects.filter(pk=first.pk).exists()
    assert not CorrectionBackup.objects.filter(run_id=first.pk).exists()
