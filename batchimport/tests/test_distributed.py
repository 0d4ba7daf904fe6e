"""Real processes: a worker killed mid-file, and two qcluster workers on Redis
sharing one all-markets job. The data is committed (transaction=True) so the
other processes see it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from django.conf import settings

from batchimport import samples, services
from batchimport.models import ImportFile, ImportJob, ImportStatus, RejectedRow
from batchimport.parsing import Layout
from conftest import child_database_url
from etl.models import MarketData

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.usefixtures("wide_dates")]

PROJECT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("IMPORT_TEST_REDIS_URL", "redis://127.0.0.1:6379/1")


def child_env(data_root: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": child_database_url(),
        "DATA_ROOT": str(data_root),
        "DEBUG": "on",
        "LOG_LEVEL": "INFO",
    }
    env.pop("REDIS_URL", None)
    env.update(extra)
    return env


def spawn(code: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    script = "import django; django.setup()\n" + code
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=PROJECT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def stored(market: str) -> set[tuple]:
    return set(
        MarketData.objects.filter(market=market).values_list("ticker", "ts", "open", "high", "low", "close", "volume")
    )


def test_worker_killed_mid_file_then_resumed_gives_the_uninterrupted_rows(data_root, tmp_path):
    rows = 120_000
    for market in ("NYSE", "NASDAQ"):  # the same content twice: NASDAQ is the uninterrupted reference
        samples.write_file(
            data_root / market / "KO.csv",
            Layout.STANDARD,
            ticker="KO",
            rows=rows,
            seed=11,
            start=datetime(1990, 1, 1),
            defect_every=97,
        )
    reference = services.import_job_start(job=services.import_job_create(path="NASDAQ"))
    assert reference.status == ImportStatus.SUCCEEDED

    job = services.import_job_create(path="NYSE", batch_size=500)
    log = tmp_path / "worker.log"
    worker = spawn(
        f"from batchimport import services\nservices.import_job_work(job_id={job.pk})", child_env(data_root), log
    )
    f = job.files.get()
    wait_for(lambda: ImportFile.objects.get(pk=f.pk).progress_done >= 2000, 60, "the worker to stage some batches")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    f.refresh_from_db()
    assert f.status == ImportStatus.RUNNING and f.progress_done > 0  # killed before its commit
    assert MarketData.objects.filter(market="NYSE").count() == 0  # nothing half-loaded

    # restart: the dead worker's claim is taken over once PostgreSQL has ended its session
    def resumed() -> bool:
        services.import_job_work(job_id=job.pk)
        return ImportJob.objects.get(pk=job.pk).status in (ImportStatus.SUCCEEDED, ImportStatus.FAILED)

    wait_for(resumed, 30, "the resumed job to finish")
    job.refresh_from_db()
    f.refresh_from_db()
    assert job.status == ImportStatus.SUCCEEDED and f.attempts == 2
    assert {(t, *rest) for (t, *rest) in stored("NYSE")} == stored("NASDAQ")
    for name in ImportJob.COUNT_FIELDS:
        assert getattr(job, name) == getattr(reference, name), name
    assert RejectedRow.objects.filter(job=job).count() == reference.rows_rejected


def test_two_qcluster_workers_on_redis_share_an_all_markets_job(data_root, tmp_path):
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    queue_key = f"django_q:{settings.Q_CLUSTER['name']}:q"
    client.delete(queue_key)
    summary = samples.write_sample_folder(data_root / "DATA", seed=5, tickers=2, days=600, defect_every=40)
    job = services.import_job_create(path="DATA", batch_size=200)
    env = child_env(data_root, REDIS_URL=REDIS_URL, Q_WORKERS="1")
    clusters = [
        spawn(
            "from django.core.management import call_command\ncall_command('qcluster')",
            env,
            tmp_path / f"qcluster{i}.log",
        )
        for i in range(2)
    ]
    try:
        time.sleep(3)
        enqueue = spawn(
            "from batchimport import services\nfrom batchimport.models import ImportJob\n"
            f"services.import_job_start(job=ImportJob.objects.get(pk={job.pk}), workers=2, queue=True)",
            env,
            tmp_path / "enqueue.log",
        )
        assert enqueue.wait(timeout=60) == 0, (tmp_path / "enqueue.log").read_text()
        try:
            wait_for(
                lambda: ImportJob.objects.get(pk=job.pk).status in (ImportStatus.SUCCEEDED, ImportStatus.FAILED),
                120,
                "the all-markets job to finish",
            )
        except AssertionError:
            states = list(ImportJob.objects.values_list("pk", "kind", "market", "status", "files_done", "error"))
            files = list(ImportFile.objects.values_list("relpath", "status", "attempts", "claimed_by", "error"))
            raise AssertionError(f"jobs {states}\nfiles {files}") from None
    finally:
        for proc in clusters:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in clusters:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        client.delete(queue_key)
    job.refresh_from_db()
    logs = "\n".join(p.read_text()[-2000:] for p in tmp_path.glob("qcluster*.log"))
    assert job.status == ImportStatus.SUCCEEDED, logs
    files = ImportFile.objects.filter(job__parent=job)
    assert files.count() == len(summary.files)
    assert set(files.values_list("attempts", flat=True)) == {1}  # no file was read twice
    assert set(files.values_list("status", flat=True)) == {"succeeded"}
    workers = {name.rsplit(":", 1)[0] for name in files.values_list("claimed_by", flat=True)}
    assert len(workers) == 2, workers  # both processes took files
    assert job.rows_read == summary.rows and job.counts_add_up
    assert MarketData.objects.count() == job.rows_inserted == summary.rows - summary.defects


def test_in_process_threads_share_a_job_without_reading_a_file_twice(data_root):
    summary = samples.write_sample_folder(data_root / "DATA", seed=3, tickers=2, days=200, defect_every=30)
    job = services.import_job_start(job=services.import_job_create(path="DATA", batch_size=50), workers=3)
    assert job.status == ImportStatus.SUCCEEDED and job.counts_add_up
    assert job.rows_read == summary.rows and job.rows_rejected == summary.defects
    files = ImportFile.objects.filter(job__parent=job)
    assert set(files.values_list("attempts", flat=True)) == {1}
    assert MarketData.objects.count() == job.rows_inserted
