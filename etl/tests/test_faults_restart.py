"""A real PostgreSQL restart while a qcluster worker runs a pipeline (sync, correct,
features), in the middle of the correct step's batches. The run ends failed with the
cause on its record and on the step that was cut, the steps after it are not run on
a connection that no longer holds the pipeline lock, and the worker does not loop on
the lost connection. A re-run resumes the interrupted correction and ends exact:
each candle corrected once, every candle in market_data_v2 with its features.
"""

from __future__ import annotations

import pytest

from etl.models import RunStatus
from etl.tests.restartable import (
    CONNECTION_ERROR,
    RECONNECTING,
    django_child,
    log_records,
    wait_for,
    worker_start,
    worker_stop,
)

pytestmark = [pytest.mark.slow, pytest.mark.embedded]

BATCH = 500
PER_SERIES = 1_500
SETUP = f"""
from corrections.tests.conftest import add_candles, add_symbol
from etl.services import reference_data_bootstrap

reference_data_bootstrap()
for ticker, market, cls, value in [
    ("THYAO", "BIST", "STOCK_BIST", "BIST"),
    ("AAPL", "NASDAQ", "STOCK_NASDAQ", None),
    ("BTC", "BINANCE", "CRYPTO", ""),
    ("IBM", "NYSE", "STOCK_NYSE", "STOCK_NYSE"),
]:
    add_candles(ticker=ticker, market=market, value=value, n={PER_SERIES}, symbol=add_symbol(ticker, market, cls))
"""
QUEUE = f"""
from etl import services
print(services.pipeline_queue(steps=["sync", "correct", "features"], options={{"batch_size": {BATCH}}}).pk)
"""
RERUN = """
from etl import services
from etl.models import PipelineRun
print(services.pipeline_rerun(run=PipelineRun.objects.get(pk={run_id}), requested_by="ops").pk)
"""
CHANGED = 3 * PER_SERIES
WRONG_CLASS = (
    "SELECT count(*) FROM market_data md JOIN symbols s ON s.id = md.symbol_id"
    " JOIN asset_classes ac ON ac.id = s.asset_class_id WHERE md.asset_class IS DISTINCT FROM ac.code"
)
TERMINAL = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SKIPPED)


@pytest.fixture
def restartable(restartable_server):
    return restartable_server  # one server for every restart test of the session (root conftest)


def _status(pg, db: str, run_id: int) -> str | None:
    row = pg.query(db, "SELECT status FROM pipeline_runs WHERE id = %s", [run_id])
    return row[0] if row else None


def _steps(pg, db: str, run_id: int) -> dict[str, tuple[str, str]]:
    with pg.connect(db) as conn:
        rows = conn.execute("SELECT name, status, error FROM pipeline_step_runs WHERE run_id = %s", [run_id])
        return {name: (status, error) for name, status, error in rows}


def test_a_postgres_restart_mid_pipeline_fails_the_run_with_the_cause_and_a_rerun_ends_exact(restartable, tmp_path):
    pg = restartable
    db = pg.database("restart_pipeline")
    django_child(SETUP, pg.env(db))
    low = pg.query(db, "SELECT min(id) FROM market_data")[0]
    log = tmp_path / "worker.log"
    worker = worker_start(pg.env(db), log)
    try:
        blocker = pg.connect(db, autocommit=False)
        try:  # a candle of the correct step's fourth batch: three are committed when the server goes
            blocker.execute("SELECT id FROM market_data WHERE id = %s FOR UPDATE", [low + 3 * BATCH + 10])
            run_id = int(django_child(QUEUE, pg.env(db)).split()[-1])
            waiting = (
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO correction_backups%%'"
            )
            wait_for(lambda: (pg.query(db, waiting) or (0,))[0] == 1, 120, "the correct step to wait on the row")
            pg.restart(down_seconds=1)
        finally:
            blocker.close()
        wait_for(lambda: _status(pg, db, run_id) in TERMINAL, 120, "the run to end")

        status, error = pg.query(db, "SELECT status, error FROM pipeline_runs WHERE id = %s", [run_id])
        assert status == RunStatus.FAILED
        assert "step correct failed: database connection lost (terminating connection" in error, error
        steps = _steps(pg, db, run_id)
        assert steps["sync"][0] == RunStatus.SUCCEEDED
        assert steps["correct"][0] == RunStatus.FAILED and "database connection lost" in steps["correct"][1], steps
        assert steps["features"][0] == RunStatus.SKIPPED, steps
        assert pg.query(db, "SELECT count(*) FROM market_data_v2") == (0,)  # nothing ran after the cut
        correction = pg.query(db, "SELECT status, phase, rows_updated, error FROM correction_runs")
        assert correction[:3] == (RunStatus.FAILED, "executing", 3 * BATCH), correction
        assert "database connection lost" in correction[3], correction

        rerun_id = int(django_child(RERUN.format(run_id=run_id), pg.env(db)).split()[-1])
        wait_for(lambda: _status(pg, db, rerun_id) in TERMINAL, 180, "the re-run to end")
    finally:
        worker_stop(worker)

    rerun = pg.query(db, "SELECT status, error FROM pipeline_runs WHERE id = %s", [rerun_id])
    assert rerun == (RunStatus.SUCCEEDED, ""), (rerun, _steps(pg, db, rerun_id))
    assert pg.query(db, WRONG_CLASS) == (0,)
    # the interrupted correction resumed, not redone: each candle backed up (and so changed) once
    assert pg.query(db, "SELECT count(*), count(DISTINCT market_data_id) FROM correction_backups") == (CHANGED, CHANGED)
    assert pg.query(db, "SELECT status, phase, rows_updated FROM correction_runs ORDER BY id LIMIT 1") == (
        RunStatus.SUCCEEDED,
        "validated",
        CHANGED,
    )
    total = 4 * PER_SERIES
    v2 = "SELECT count(*), count(DISTINCT (symbol_id, timeframe, ts)), count(features_revision) FROM market_data_v2"
    assert pg.query(db, v2) == (total, total, total)
    errors = log_records(log, CONNECTION_ERROR)
    assert 1 <= len(errors) <= 6, "\n".join(errors)
    assert 1 <= len(log_records(log, RECONNECTING)) <= 3
