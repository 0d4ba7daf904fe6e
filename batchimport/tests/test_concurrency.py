"""max_concurrency at once: a worker task works only while it holds one of its
job's worker slots. With the slots held elsewhere a task reads nothing; with a
real qcluster of more workers than the job's concurrency, and more tasks queued
than that, never more than max_concurrency files are read at the same time.
The data is committed (transaction=True) so other sessions and processes see it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from django.db import connection

from batchimport import samples, services
from batchimport.models import ImportFile, ImportJob, ImportStatus
from batchimport.parsing import Layout
from batchimport.services.concurrency import job_enqueue, worker_slot
from conftest import child_database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("wide_dates")]

PROJECT = Path(__file__).resolve().parents[2]


def write_files(root: Path, count: int, rows: int) -> None:
    for number in range(count):
        samples.write_file(
            root / "DATA" / "NYSE" / f"T{number}.csv",
            Layout.STANDARD,
            ticker=f"T{number}",
            rows=rows,
            seed=number,
            start=datetime(1990, 1, 1),
        )


class SlotHolder:
    """Another session (a thread with its own connection) holding one of the job's slots until released."""

    def __init__(self, job: ImportJob):
        self.taken: list[int | None] = []
        self._release = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._hold, args=(job,))
        self._thread.start()
        self._ready.wait(10)

    def _hold(self, job: ImportJob) -> None:
        try:
            with worker_slot(job) as slot:
                self.taken.append(slot)
                self._ready.set()
                self._release.wait(30)
        finally:
            connection.close()

    def release(self) -> None:
        self._release.set()
        self._thread.join(10)


def test_a_task_finding_every_slot_taken_reads_nothing_and_one_with_a_slot_reads_all(data_root, reference_data):
    write_files(data_root, 3, rows=20)
    job = services.import_job_create(path="DATA/NYSE", max_concurrency=2)
    holders = [SlotHolder(job), SlotHolder(job)]
    assert sorted(h.taken[0] for h in holders) == [0, 1]  # the job's two slots
    idle = services.import_job_work(job_id=job.pk)
    assert idle.files_processed == 0  # two tasks "at work" already: this one stops at once
    assert ImportFile.objects.filter(job=job, status=ImportStatus.QUEUED).count() == 3
    holders[0].release()
    worked = services.import_job_work(job_id=job.pk)
    holders[1].release()
    assert worked.files_processed == 3
    job.refresh_from_db()
    assert job.status == ImportStatus.SUCCEEDED and job.rows_inserted == 60


def test_the_slots_belong_to_the_top_job(data_root, reference_data):
    samples.write_sample_folder(data_root / "DATA", tickers=1, days=5)
    parent = services.import_job_create(path="DATA", max_concurrency=1)
    holder = SlotHolder(parent.children.get(market="BIST"))  # a task of one market takes the job's only slot
    assert holder.taken == [0]
    assert services.import_job_work(job_id=parent.pk).files_processed == 0
    holder.release()
    assert services.import_job_work(job_id=parent.pk).files_processed == 4


def max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    current = peak = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


@pytest.mark.slow
def test_a_real_qcluster_never_reads_more_than_max_concurrency_files_at_once(data_root, reference_data, tmp_path):
    write_files(data_root, 8, rows=25_000)
    job = services.import_job_create(path="DATA/NYSE", max_concurrency=2, batch_size=5000)
    env = {
        **os.environ,
        "DATABASE_URL": child_database_url(),
        "DATA_ROOT": str(data_root),
        "DEBUG": "on",
        "Q_WORKERS": "4",  # more workers than the job may use
        "IMPORT_EARLIEST_DATE": "1800-01-01",
        "IMPORT_DAYS_AHEAD": str(365 * 300),
    }
    env.pop("REDIS_URL", None)
    log = tmp_path / "qcluster.log"
    with open(log, "ab") as out:
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=PROJECT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        assert job_enqueue(job.pk) == 2
        assert job_enqueue(job.pk) == 2  # four tasks for a job of two: two of them must find no slot
        deadline = time.monotonic() + 180
        while ImportJob.objects.get(pk=job.pk).status not in (ImportStatus.SUCCEEDED, ImportStatus.FAILED):
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
    finally:
        os.killpg(cluster.pid, signal.SIGTERM)
        try:
            cluster.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)
    job.refresh_from_db()
    assert job.status == ImportStatus.SUCCEEDED, log.read_text()[-3000:]
    files = ImportFile.objects.filter(job=job)
    assert set(files.values_list("attempts", flat=True)) == {1}
    readers = {name.rsplit(":", 1)[0] for name in files.values_list("claimed_by", flat=True)}
    assert len(readers) <= 2, readers
    # A worker claims a group of files at once (one claim, one started_at) and reads them one
    # after another: what may not exceed the limit is the number of claims held at once.
    claims: dict[tuple[str, datetime], datetime] = {}
    for worker, started, finished in files.values_list("claimed_by", "started_at", "finished_at"):
        claims[(worker, started)] = max(finished, claims.get((worker, started), finished))
    assert max_overlap([(started, finished) for (_, started), finished in claims.items()]) <= 2
