"""Imports across several hosts: paths relative to DATA_ROOT, a missing file
retried, files of dead workers swept back into the queue, the log context in
the import's threads; and three worker processes that each see the share at
their own mount point, one of them killed mid-import."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from importlib import import_module
from pathlib import Path

import pytest
from django.apps import apps
from django.db import connection
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from batchimport import samples, services
from batchimport.models import ImportFile, ImportJob, ImportStatus
from batchimport.parsing import Layout
from conftest import child_database_url
from etl.locks import IMPORT_FILE, session_lock
from etl.logcontext import RunContextFilter, run_context
from etl.models import DeadLetter, MarketData

PROJECT = Path(__file__).resolve().parents[2]


def _nyse_file(data_root: Path, ticker: str, rows: int = 5) -> Path:
    path = data_root / "DATA" / "NYSE" / f"{ticker}.csv"
    samples.write_file(path, Layout.STANDARD, ticker=ticker, rows=rows)
    return path


class _Records(logging.Handler):
    """Keeps the records it sees, with the run context of the thread that logged them."""

    def __init__(self):
        super().__init__(level=logging.INFO)
        self.addFilter(RunContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def loader_records():
    handler = _Records()
    logger = logging.getLogger("batchimport.services.loader")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(previous)


# ---------------------------------------------------------------- relative paths


@pytest.mark.django_db
def test_jobs_and_files_store_paths_relative_to_the_data_root(data_root):
    _nyse_file(data_root, "KO")
    job = services.import_job_create(path=str(data_root / "DATA"))  # absolute in, relative stored
    child = job.children.get()
    assert (job.path, child.path) == ("DATA", "DATA/NYSE")
    assert list(ImportFile.objects.values_list("relpath", flat=True)) == ["DATA/NYSE/KO.csv"]
    services.import_job_cancel(job=job)  # one import of a folder at a time
    assert services.import_job_create(path=".", market="NYSE").path == "."


@pytest.mark.django_db
def test_a_worker_reads_the_file_below_its_own_data_root(data_root, tmp_path, settings):
    _nyse_file(data_root, "KO", rows=6)
    job = services.import_job_create(path="DATA/NYSE")
    elsewhere = tmp_path / "mounted-here"
    shutil.copytree(data_root, elsewhere)  # the same share, seen at another mount point
    shutil.rmtree(data_root)
    settings.DATA_ROOT = elsewhere
    job = services.import_job_start(job=job)
    assert job.status == ImportStatus.SUCCEEDED and MarketData.objects.filter(ticker="KO").count() == 6


@pytest.mark.django_db
def test_migration_makes_absolute_paths_under_the_data_root_relative_and_back(data_root):
    migration = import_module("batchimport.migrations.0004_fill_relative_paths")
    root = str(data_root.resolve())
    inside = ImportJob.objects.create(path="x", market="NYSE")
    at_root = ImportJob.objects.create(path="x", kind=ImportJob.Kind.ALL_MARKETS)
    outside = ImportJob.objects.create(path="x", market="NYSE")
    ImportJob.objects.filter(pk=inside.pk).update(path=f"{root}/DATA/NYSE")
    ImportJob.objects.filter(pk=at_root.pk).update(path=root)
    ImportJob.objects.filter(pk=outside.pk).update(path=f"{root}-other/NYSE")  # a sibling folder, not below
    paths = lambda: dict(ImportJob.objects.values_list("pk", "path"))  # noqa: E731
    with connection.schema_editor() as editor:
        migration.to_relative(apps, editor)
    assert paths() == {inside.pk: "DATA/NYSE", at_root.pk: ".", outside.pk: f"{root}-other/NYSE"}
    with connection.schema_editor() as editor:
        migration.to_absolute(apps, editor)
    assert paths() == {inside.pk: f"{root}/DATA/NYSE", at_root.pk: root, outside.pk: f"{root}-other/NYSE"}


# ---------------------------------------------------------------- missing file


@pytest.mark.django_db
def test_a_missing_file_is_retried_with_backoff_before_it_is_dead_lettered(data_root):
    path = _nyse_file(data_root, "KO")
    job = services.import_job_create(path="DATA/NYSE", max_attempts=2)
    path.unlink()  # e.g. the share is not mounted on this worker's host (yet)
    before = timezone.now()
    services.import_job_start(job=job)
    file = ImportFile.objects.get()
    assert file.status == ImportStatus.QUEUED and file.attempts == 1 and "No such file" in file.error
    assert before + timedelta(seconds=50) < file.next_attempt_at < before + timedelta(minutes=2)
    assert not DeadLetter.objects.exists()

    ImportFile.objects.filter(pk=file.pk).update(next_attempt_at=timezone.now() - timedelta(hours=1))  # due
    services.import_job_work(job_id=job.pk)
    file.refresh_from_db()
    assert file.status == ImportStatus.DEAD_LETTERED and file.attempts == 2
    assert DeadLetter.objects.get().payload["file_id"] == file.pk
    assert ImportJob.objects.get(pk=job.pk).status == ImportStatus.FAILED


# ---------------------------------------------------------------- orphan sweep


@pytest.mark.django_db
def test_sweep_requeues_a_file_whose_worker_is_gone_and_leaves_a_live_one(
    data_root, django_capture_on_commit_callbacks
):
    for ticker in ("DEAD", "LIVE", "WAIT"):
        _nyse_file(data_root, ticker)
    job = services.import_job_create(path="DATA/NYSE")
    files = {f.ticker: f for f in job.files.all()}
    ImportFile.objects.filter(pk__in=[files["DEAD"].pk, files["LIVE"].pk]).update(
        status=ImportStatus.RUNNING, attempts=1, claimed_by="host-b:4242:1"
    )
    holding, done = threading.Event(), threading.Event()

    def live_worker() -> None:  # another host's session, reading LIVE
        try:
            with session_lock(IMPORT_FILE, files["LIVE"].pk):
                holding.set()
                done.wait(30)
        finally:
            connection.close()

    worker = threading.Thread(target=live_worker)
    worker.start()
    try:
        assert holding.wait(30)
        with django_capture_on_commit_callbacks(execute=True):
            result = services.orphaned_files_requeue()
    finally:
        done.set()
        worker.join()
    assert (result.files_requeued, result.jobs_woken) == (1, (job.pk,))
    status = dict(ImportFile.objects.values_list("ticker", "status"))
    assert status == {"DEAD": ImportStatus.QUEUED, "LIVE": ImportStatus.RUNNING, "WAIT": ImportStatus.QUEUED}
    assert OrmQ.objects.count() == 2  # the job's workers woken (max_concurrency 2, two files waiting)
    assert services.orphaned_files_requeue().files_requeued == 1  # its worker has gone since: swept now
    assert ImportFile.objects.get(ticker="LIVE").status == ImportStatus.QUEUED


@pytest.mark.django_db
def test_sweep_schedule_runs_every_minute_and_is_created_once():
    migration = import_module("batchimport.migrations.0006_fill_orphan_sweep_schedule")
    Schedule.objects.filter(name=migration.NAME).delete()  # a transactional test may have flushed it
    migration.create(apps, None)
    migration.create(apps, None)
    schedule = Schedule.objects.get(name="batchimport:orphan-sweep")
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "batchimport.tasks.orphaned_files_requeue",
        Schedule.MINUTES,
        1,
    )


# ---------------------------------------------------------------- log context


@pytest.mark.django_db
def test_a_worker_task_logs_under_its_import(data_root, loader_records):
    _nyse_file(data_root, "KO")
    job = services.import_job_create(path="DATA/NYSE")
    services.import_job_work(job_id=job.pk)
    assert [record.run for record in loader_records] == [f"[import:{job.pk}]"]


@pytest.mark.django_db(transaction=True)
def test_the_log_context_reaches_the_import_threads(data_root, loader_records):
    for ticker in ("A", "B", "C", "D", "E", "F"):
        _nyse_file(data_root, ticker)
    job = services.import_job_create(path="DATA/NYSE")
    with run_context("pipeline", 77):
        services.import_job_start(job=job, workers=3)
    assert len(loader_records) == 6
    assert {record.threadName.rsplit("-", 1)[0] for record in loader_records} == {f"import-{job.pk}"}
    assert {record.run for record in loader_records} == {"[pipeline:77]"}


# ---------------------------------------------------------------- three hosts, one killed

WORKER = """
import os, time
import django
django.setup()
from batchimport import services
from batchimport.models import TERMINAL, ImportJob
job_id = int(os.environ["IMPORT_JOB_ID"])
while ImportJob.objects.get(pk=job_id).status not in TERMINAL:  # a qcluster worker taking task after task
    services.import_job_work(job_id=job_id)
    time.sleep(0.2)
"""
# Bind the share at this host's mount point, then hide the share's own path
# (a tmpfs over it), so the worker can only find the files below its DATA_ROOT.
HOST = 'mount --bind "$SHARE" "$DATA_ROOT" && mount -t tmpfs hidden "$SHARE" && exec "$PYTHON" -c "$WORKER"'


def _namespaces_refused(tmp_path: Path) -> str:
    source, target = tmp_path / "probe-a", tmp_path / "probe-b"
    source.mkdir()
    target.mkdir()
    if shutil.which("unshare") is None:
        return "no unshare(1) on this machine"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "mount", "--bind", str(source), str(target)],
        capture_output=True,
        text=True,
    )
    return "" if probe.returncode == 0 else f"the kernel refuses a private mount namespace: {probe.stderr.strip()}"


def _host(share: Path, mount_point: Path, job_id: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": child_database_url(),
        "DATA_ROOT": str(mount_point),
        "SHARE": str(share),
        "PYTHON": sys.executable,
        "WORKER": WORKER,
        "IMPORT_JOB_ID": str(job_id),
        "DEBUG": "on",
    }
    env.pop("REDIS_URL", None)
    with open(log, "ab") as out:
        return subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", HOST],
            cwd=PROJECT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("wide_dates")
def test_three_hosts_with_the_share_at_different_mount_points_one_killed_mid_import(data_root, tmp_path):
    refused = _namespaces_refused(tmp_path)
    if refused:
        pytest.skip(refused)
    written = [
        samples.write_file(
            data_root / "DATA" / market / f"{ticker}.csv",
            Layout.STANDARD,
            ticker=ticker,
            rows=60_000,
            seed=seed,
            start=datetime(1900, 1, 1),
            defect_every=101,
        )
        for seed, (market, ticker) in enumerate([(m, t) for m in ("NYSE", "NASDAQ") for t in ("KO", "PEP", "IBM")])
    ]
    job = services.import_job_create(path="DATA", batch_size=500)
    mount_points = [tmp_path / f"host-{name}" for name in ("a", "b", "c")]
    logs = [tmp_path / f"host-{name}.log" for name in ("a", "b", "c")]
    for mount_point in mount_points:
        mount_point.mkdir()
    hosts = [_host(data_root, mount, job.pk, log) for mount, log in zip(mount_points, logs, strict=True)]
    victim = hosts[0]
    try:
        victims_file = ImportFile.objects.filter(
            job__parent=job, claimed_by__contains=f":{victim.pid}:", status=ImportStatus.RUNNING, progress_done__gt=0
        )
        _wait_for(victims_file.exists, 120, "host a to be part-way through a file")
        killed = victims_file.values_list("pk", flat=True).first()
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)

        def finished() -> bool:
            services.orphaned_files_requeue()  # what the every-minute schedule does
            return ImportJob.objects.get(pk=job.pk).status in (ImportStatus.SUCCEEDED, ImportStatus.FAILED)

        _wait_for(finished, 300, "the job to finish on the two hosts left")
    except AssertionError:
        raise AssertionError("\n".join(log.read_text()[-3000:] for log in logs)) from None
    finally:
        for host in hosts:
            if host.poll() is None:
                os.killpg(host.pid, signal.SIGKILL)
                host.wait(timeout=10)
    job.refresh_from_db()
    files = ImportFile.objects.filter(job__parent=job)
    assert job.status == ImportStatus.SUCCEEDED, list(files.values_list("relpath", "status", "error"))
    assert set(files.values_list("status", flat=True)) == {ImportStatus.SUCCEEDED}
    assert files.get(pk=killed).attempts == 2  # read again from the start after the kill
    assert f":{victim.pid}:" not in files.get(pk=killed).claimed_by
    hosts_used = {claimed.split(":")[1] for claimed in files.values_list("claimed_by", flat=True)}
    assert len(hosts_used) >= 2
    good = sum(summary.good for summary in written)
    assert MarketData.objects.count() == good == job.rows_inserted  # every row stored exactly once
    assert job.rows_read == sum(summary.rows for summary in written) and job.counts_add_up
    for summary in written:
        ticker, market = summary.path.stem, summary.path.parent.name
        assert MarketData.objects.filter(ticker=ticker, market=market).count() == summary.good
