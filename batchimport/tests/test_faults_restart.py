"""A real PostgreSQL restart while a worker imports: the embedded server the fault
tests share (etl/tests/restartable.py) is stopped (fast shutdown: every session cut)
and started again mid-file. The job still ends exact, and the worker's log shows a
few connection errors, not an error loop.

Everything Django runs in child processes (the job's start, `qcluster`) against that
server; this process only owns the server and reads with psycopg.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from batchimport import samples
from batchimport.models import TERMINAL, ImportStatus
from batchimport.parsing import Layout
from etl.tests.restartable import CONNECTION_ERROR, django_child, log_records, wait_for, worker_start, worker_stop

pytestmark = [pytest.mark.slow, pytest.mark.embedded]

ROWS = 60_000


def test_a_postgres_restart_mid_import_ends_exact_without_an_error_loop(restartable_server, tmp_path):
    pg = restartable_server
    db = pg.database("restart_import")
    data_root = tmp_path / "data"
    summary = samples.write_file(
        data_root / "NYSE" / "KO.csv", Layout.YAHOO, ticker="KO", rows=ROWS, step=timedelta(minutes=1), defect_every=60
    )
    env = pg.env(db, DATA_ROOT=str(data_root))
    start = (
        "from batchimport import services\n"
        "job = services.import_job_create(path='NYSE', batch_size=500)\n"
        "services.import_job_start(job=job, queue=True)\n"
    )
    django_child(start, env)

    log = tmp_path / "worker.log"
    worker = worker_start(env, log)
    try:
        third = f"SELECT 1 FROM import_files WHERE progress_done >= {ROWS // 3}"
        wait_for(lambda: pg.query(db, third) is not None, 180, "the worker to read a third of the file", every=0.5)
        pg.restart(down_seconds=5)
        terminal = ", ".join(f"'{status}'" for status in TERMINAL)
        finished = f"SELECT status FROM import_jobs WHERE status IN ({terminal})"
        wait_for(lambda: pg.query(db, finished) is not None, 300, "the job to end after the restart", every=0.5)
    finally:
        worker_stop(worker)

    text = log.read_text(errors="replace")
    assert pg.query(db, "SELECT status FROM import_jobs") == (ImportStatus.SUCCEEDED,), text[-3000:]
    assert pg.query(db, "SELECT count(*) FROM market_data WHERE ticker = 'KO'") == (summary.good,)
    assert pg.query(db, "SELECT count(*) FROM rejected_rows") == (summary.defects,)  # once per line
    assert pg.query(db, "SELECT rows_read, rows_rejected FROM import_jobs") == (summary.rows, summary.defects)
    errors = log_records(log, CONNECTION_ERROR)
    assert 1 <= len(errors) <= 10, "\n".join(errors[:40])  # it saw the restart, and did not loop on it
