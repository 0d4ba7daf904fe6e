"""A job whose process died, concurrent imports of one folder, rejects once per line."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pytest
from django.db import IntegrityError, connection, transaction

from batchimport import services
from batchimport.models import ImportFile, ImportJob, ImportStatus, RejectedRow
from etl.errors import ConflictError
from etl.models import MarketData

HEADER = b"Date,Open,High,Low,Close,Adj Close,Volume\n"
BAD_EVERY = 10


def write(data_root, rows: int = 200) -> None:
    first = date(2020, 1, 1)
    lines = []
    for n in range(rows):
        close = "x" if n % BAD_EVERY == 0 else "10.5"
        lines.append(f"{first + timedelta(days=n)},10,11,9,{close},10.4,{1000 + n}\n".encode())
    (data_root / "NYSE").mkdir(exist_ok=True)
    (data_root / "NYSE" / "KO.csv").write_bytes(HEADER + b"".join(lines))


def killed_mid_file(job: ImportJob, partial_rejects: int = 5) -> ImportFile:
    """What a SIGKILLed command leaves: its file `running` (its lock died with it), some rejects written."""
    import_file = ImportFile.objects.get(job=job)
    ImportFile.objects.filter(pk=import_file.pk).update(status=ImportStatus.RUNNING, attempts=1, claimed_by="dead:1")
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.RUNNING)
    RejectedRow.objects.bulk_create(
        RejectedRow(file=import_file, job=job, line=2 + n * BAD_EVERY, raw="", reason="partial")
        for n in range(partial_rejects)
    )
    job.refresh_from_db()
    return import_file


@pytest.mark.django_db
def test_cancel_stops_a_job_whose_process_died(data_root):
    write(data_root)
    job = services.import_job_create(path="NYSE")
    import_file = killed_mid_file(job)
    job = services.import_job_cancel(job=job)
    assert job.status == ImportStatus.CANCELLED
    import_file.refresh_from_db()
    assert import_file.status == ImportStatus.CANCELLED and "had stopped" in import_file.error
    assert not RejectedRow.objects.exists()


@pytest.mark.django_db
def test_retry_takes_up_a_job_whose_process_died_and_rejects_stay_once_per_line(data_root):
    write(data_root)
    job = services.import_job_create(path="NYSE")
    killed_mid_file(job)
    job = services.import_job_retry(job=job, queue=False)
    assert job.status == ImportStatus.SUCCEEDED
    assert (job.rows_read, job.rows_rejected) == (200, 20)
    assert RejectedRow.objects.count() == 20
    assert MarketData.objects.filter(ticker="KO").count() == 180


@pytest.mark.django_db
def test_a_rerun_replaces_the_rejects_a_killed_job_left(data_root):
    write(data_root)
    killed = services.import_job_create(path="NYSE")
    killed_mid_file(killed)
    rerun = services.import_job_start(job=services.import_job_create(path="NYSE"))  # the dead job does not block
    assert rerun.status == ImportStatus.SUCCEEDED
    assert RejectedRow.objects.count() == 20 == rerun.rows_rejected
    assert set(RejectedRow.objects.values_list("job_id", flat=True)) == {rerun.pk}


@pytest.mark.django_db
def test_a_second_import_of_a_running_folder_is_refused_with_the_running_job(data_root):
    write(data_root)
    first = services.import_job_create(path="NYSE")
    with pytest.raises(ConflictError, match=f"import job {first.pk} is already queued") as refused:
        services.import_job_create(path="NYSE")
    assert refused.value.code == "import_running"
    with pytest.raises(ConflictError):
        services.import_job_create(path=".", market="NYSE")  # the root holds the folder
    assert ImportJob.objects.count() == 1


@pytest.mark.django_db
def test_rejected_rows_are_unique_per_file_line(data_root):
    write(data_root, rows=20)
    job = services.import_job_start(job=services.import_job_create(path="NYSE"))
    existing = RejectedRow.objects.first()
    with pytest.raises(IntegrityError), transaction.atomic():
        RejectedRow.objects.create(file=existing.file, job=job, line=existing.line, raw="", reason="again")


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_api_imports_of_one_folder_start_one_job(data_root, api_client_for):
    write(data_root)
    client = api_client_for(staff=True, perms=("batchimport.start_import",))
    barrier = threading.Barrier(20)
    codes: list[int] = []

    def post() -> None:
        try:
            barrier.wait()
            response = client.post("/api/batch-processing/markets/NYSE/import", {"dataPath": "NYSE"}, format="json")
            codes.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [202] + [409] * 19
    assert ImportJob.objects.count() == 1
