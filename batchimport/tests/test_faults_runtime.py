"""Faults while an import runs: the database connection lost mid-file, a file
that vanishes, a data folder that cannot be written. Each ends in an exact
state: the file retried (or refused) with the cause on its record, every row
stored once, rejects recorded once."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule

from batchimport import samples, services
from batchimport.models import ImportFile, ImportJob, ImportStatus, RejectedRow
from batchimport.parsing import Layout
from batchimport.services import jobs
from conftest import child_database_url
from etl.errors import DomainError
from etl.models import MarketData


def write(data_root, rows: int = 3_000) -> samples.FileSummary:
    return samples.write_file(
        data_root / "NYSE" / "KO.csv",
        Layout.YAHOO,
        ticker="KO",
        rows=rows,
        step=timedelta(minutes=1),
        defect_every=50,
    )


def terminate(pid: int) -> None:
    """What a PostgreSQL restart does to a session: the server ends it."""
    with psycopg.connect(child_database_url(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.mark.django_db(transaction=True)
def test_a_connection_lost_mid_file_is_recorded_retried_and_then_exact(data_root, caplog):
    summary = write(data_root)
    job = services.import_job_create(path="NYSE", batch_size=500)
    batches: list[int] = []

    def server_restarts(n: int) -> None:
        batches.append(n)
        if len(batches) == 2:
            terminate(connection.connection.info.backend_pid)

    services.import_job_start(job=job, on_batch=server_restarts)

    import_file = ImportFile.objects.get(job=job)
    assert import_file.status == ImportStatus.QUEUED  # a retry, not a dead letter: the fault was passing
    assert import_file.next_attempt_at is not None
    assert import_file.error.startswith("attempt 1: ") and len(import_file.error) > len("attempt 1: ")
    assert Schedule.objects.filter(name__startswith=f"import-retry-{job.pk}-").count() == 1
    assert MarketData.objects.count() == 0  # market_data changes only in the file's last transaction
    assert RejectedRow.objects.count() == 0  # the aborted attempt's rejects are gone

    ImportFile.objects.filter(pk=import_file.pk).update(next_attempt_at=timezone.now())
    services.import_job_work(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == ImportStatus.SUCCEEDED
    assert (job.rows_read, job.rows_rejected) == (summary.rows, summary.defects)
    assert MarketData.objects.count() == summary.good == job.rows_inserted
    assert RejectedRow.objects.count() == summary.defects
    assert ImportFile.objects.get(pk=import_file.pk).attempts == 2


@pytest.mark.django_db
def test_a_file_that_vanished_is_retried_with_its_name_and_nothing_stored(data_root):
    summary = write(data_root, rows=100)
    job = services.import_job_create(path="NYSE")
    summary.path.unlink()
    job = services.import_job_start(job=job)
    import_file = ImportFile.objects.get(job=job)
    assert import_file.status == ImportStatus.QUEUED and import_file.attempts == 1
    assert "No such file or directory" in import_file.error and "NYSE/KO.csv" in import_file.error
    assert MarketData.objects.count() == 0 and RejectedRow.objects.count() == 0


@pytest.mark.django_db
def test_a_file_that_vanishes_between_listing_and_sizing_does_not_break_the_job(data_root, monkeypatch):
    summary = write(data_root, rows=10)
    real_list = jobs._list_files

    def listed_then_gone(path):
        found = real_list(path)
        summary.path.unlink()  # the scraper removes it right after the listing
        return found

    monkeypatch.setattr(jobs, "_list_files", listed_then_gone)
    job = services.import_job_create(path="NYSE")
    assert ImportFile.objects.get(job=job).size is None
    job = services.import_job_start(job=job)
    assert ImportFile.objects.get(job=job).status == ImportStatus.QUEUED  # retried later, with its reason


@pytest.mark.django_db
def test_an_upload_to_a_data_folder_that_cannot_be_written_is_a_clear_error(data_root):
    (data_root / "uploads").write_text("not a folder")  # mkdir below it fails like a read-only share
    upload = SimpleUploadedFile("KO.csv", b"Date,Open,High,Low,Close,Volume\n")
    with pytest.raises(DomainError) as refused:
        services.upload_store(upload=upload, market="NYSE")
    assert refused.value.code == "data_root_unwritable" and refused.value.status_code == 503
    assert "cannot store the upload" in refused.value.message
    assert ImportJob.objects.count() == 0
