"""A foreground `manage.py import_market_data` killed with SIGKILL at about a third
of its file: its job is not left `running` for ever. Retry takes it up, cancel
stops it, a rerun imports the rest; rows stored once, rejects recorded once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django_q.models import Schedule

from batchimport import samples, services
from batchimport.models import TERMINAL, ImportFile, ImportJob, ImportStatus, RejectedRow
from batchimport.parsing import Layout
from batchimport.tests.test_distributed import PROJECT, child_env, wait_for
from etl.models import MarketData
from etl.services.summaries import summary_check

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROWS = 60_000


def killed_import(data_root: Path, log: Path) -> tuple[ImportJob, samples.FileSummary]:
    summary = samples.write_file(
        data_root / "NYSE" / "KO.csv",
        Layout.YAHOO,
        ticker="KO",
        rows=ROWS,
        step=timedelta(minutes=1),
        defect_every=60,
    )
    with open(log, "ab") as out:
        command = subprocess.Popen(
            [sys.executable, "manage.py", "import_market_data", "NYSE", "--batch-size", "500"],
            cwd=PROJECT,
            env=child_env(data_root),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def a_third_read() -> bool:
        read = ImportFile.objects.filter(job__market="NYSE").values_list("progress_done", flat=True).first()
        return bool(read) and read >= ROWS // 3

    try:
        wait_for(a_third_read, 120, "the command to read a third of the file")
    finally:
        os.killpg(command.pid, signal.SIGKILL)
        command.wait(timeout=10)
    job = ImportJob.objects.get()
    assert job.status == ImportStatus.RUNNING and RejectedRow.objects.exists()  # what the kill leaves
    return job, summary


def assert_exact(job: ImportJob, summary: samples.FileSummary) -> None:
    assert job.status == ImportStatus.SUCCEEDED
    assert MarketData.objects.filter(ticker="KO").count() == summary.good
    assert RejectedRow.objects.count() == summary.defects  # once per line, whatever the attempts
    assert (job.rows_read, job.rows_rejected) == (summary.rows, summary.defects)


def test_retry_takes_up_a_killed_command_job(data_root, tmp_path):
    job, summary = killed_import(data_root, tmp_path / "command.log")
    job = services.import_job_retry(job=job, queue=False)
    assert_exact(job, summary)


def test_cancel_stops_a_killed_command_job(data_root, tmp_path):
    job, _ = killed_import(data_root, tmp_path / "command.log")
    job = services.import_job_cancel(job=job)
    assert job.status == ImportStatus.CANCELLED
    assert not RejectedRow.objects.exists() and not MarketData.objects.exists()


def test_a_rerun_after_a_killed_command_imports_the_rest_with_rejects_once(data_root, tmp_path):
    _, summary = killed_import(data_root, tmp_path / "command.log")
    rerun = services.import_job_start(job=services.import_job_create(path="NYSE"))
    assert_exact(rerun, summary)
    assert summary_check() == []  # the killed transaction's summary deltas went with it


def _cluster(data_root: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=PROJECT,
            env=child_env(data_root, Q_WORKERS="1"),  # the ORM broker: no Redis needed
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(cluster: subprocess.Popen) -> None:
    if cluster.poll() is None:
        os.killpg(cluster.pid, signal.SIGTERM)
        try:
            cluster.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)


def test_a_worker_cluster_killed_mid_import_is_replaced_within_two_minutes(data_root, tmp_path):
    summary = samples.write_file(
        data_root / "NYSE" / "KO.csv", Layout.YAHOO, ticker="KO", rows=ROWS, step=timedelta(minutes=1), defect_every=60
    )
    # the every-minute sweep (data migration 0006; a transactional test may have flushed it)
    Schedule.objects.update_or_create(
        name="batchimport:orphan-sweep",
        defaults={"func": "batchimport.tasks.orphaned_files_requeue", "schedule_type": Schedule.MINUTES, "minutes": 1},
    )
    job = services.import_job_create(path="NYSE", batch_size=500)
    services.import_job_start(job=job, queue=True)  # one task in the ORM queue (autocommit: at once)
    victim = _cluster(data_root, tmp_path / "victim.log")
    try:
        wait_for(lambda: (ImportFile.objects.get(job=job).progress_done or 0) >= ROWS // 3, 120, "a third read")
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
    assert ImportFile.objects.get(job=job).status == ImportStatus.RUNNING
    killed_at = time.monotonic()
    replacement = _cluster(data_root, tmp_path / "replacement.log")
    try:
        wait_for(lambda: ImportJob.objects.get(pk=job.pk).status in TERMINAL, 120, "the new worker to finish the job")
    finally:
        _stop(replacement)
    assert time.monotonic() - killed_at < 120  # not Q_RETRY (65 minutes)
    job.refresh_from_db()
    assert_exact(job, summary)
    assert ImportFile.objects.get(job=job).attempts == 2
