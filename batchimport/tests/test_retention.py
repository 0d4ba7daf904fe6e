"""Import history is pruned past the retention window, the latest job of each kind kept."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from batchimport.models import ImportFile, ImportJob, RejectedRow
from etl.services import retention_prune

pytestmark = pytest.mark.django_db


def _job(age_days: int, *, kind: str = "market", status: str = "succeeded") -> ImportJob:
    job = ImportJob.objects.create(kind=kind, status=status, path="DATA")
    created = timezone.now() - timedelta(days=age_days)
    ImportJob.objects.filter(pk=job.pk).update(created_at=created)
    import_file = ImportFile.objects.create(job=job, relpath=f"DATA/NYSE/KO{job.pk}.csv", market="NYSE")
    RejectedRow.objects.create(file=import_file, job=job, line=2, raw="x", reason="bad")
    RejectedRow.objects.filter(job=job).update(created_at=created)
    return job


def test_old_finished_jobs_go_with_their_files_and_rejected_rows():
    old = _job(45)
    latest_old = _job(40)
    running = _job(50, kind="all_markets", status="running")
    recent = _job(1, kind="all_markets")
    result = retention_prune(days=30)
    assert result.deleted["import_jobs"] == 3  # the job, its file, its rejected row
    assert set(ImportJob.objects.values_list("pk", flat=True)) == {latest_old.pk, running.pk, recent.pk}
    assert not ImportFile.objects.filter(job=old).exists()
    # Rejected rows past the window go also for the jobs that are kept.
    assert result.deleted["rejected_rows"] == 2
    assert list(RejectedRow.objects.values_list("job_id", flat=True)) == [recent.pk]


def test_an_old_job_whose_file_wrote_candles_is_kept_as_their_provenance():
    delivered, empty = _job(45), _job(44)
    _job(40)  # the latest of its kind, kept anyway
    ImportFile.objects.filter(job=delivered).update(rows_inserted=250)
    parent = _job(43, kind="all_markets")
    child = ImportJob.objects.create(kind="market", status="succeeded", path="DATA/NYSE", parent=parent)
    ImportFile.objects.create(job=child, relpath="DATA/NYSE/IBM.csv", market="NYSE", rows_updated=3)
    _job(41, kind="all_markets")
    retention_prune(days=30)
    kept = set(ImportJob.objects.values_list("pk", flat=True))
    assert {delivered.pk, parent.pk, child.pk} <= kept and empty.pk not in kept
