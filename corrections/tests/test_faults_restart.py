"""A real PostgreSQL restart while a qcluster worker executes, then rolls back, a
correction. The restart cuts the worker mid-batch (it waits on a row this test
locks); the run ends failed with the cause on its record, never `running` with an
empty error. Executing (rolling back) it again resumes it from its last committed
batch, and the table ends exactly as the backup says: each row changed once.
"""

from __future__ import annotations

import pytest

from corrections.models import Phase
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

BATCH = 1_000
PER_SERIES = 5_000
SETUP = f"""
from corrections import services
from corrections.tests.conftest import add_candles, add_symbol
from etl.services import reference_data_bootstrap

reference_data_bootstrap()
for ticker, market, cls, value in [
    ("THYAO", "BIST", "STOCK_BIST", "BIST"),
    ("AAPL", "NASDAQ", "STOCK_NASDAQ", None),
    ("BTC", "BINANCE", "CRYPTO", ""),
    ("IBM", "NYSE", "STOCK_NYSE", "STOCK_NYSE"),  # already right: never changed
]:
    add_candles(ticker=ticker, market=market, value=value, n={PER_SERIES}, symbol=add_symbol(ticker, market, cls))
add_candles(ticker="ETH", market="BINANCE", value=None, n=500, symbol=None)  # no symbol: never changed
run = services.correction_run_create(requested_by="test", overwrite_mismatched=True, batch_size={BATCH})
print(run.pk)
"""
CHANGED = 3 * PER_SERIES
# The whole table, every column, in id order.
TABLE_MD5 = "SELECT md5(string_agg(md::text, '|' ORDER BY md.id)) FROM market_data md"
# Every column but the two a correction writes.
UNTOUCHED_MD5 = (
    "SELECT md5(string_agg(concat_ws(',', id, ticker, market, timeframe, ts, open, high, low, close, volume,"
    " symbol_id, import_file_id), '|' ORDER BY id)) FROM market_data"
)
# Rows whose asset class is not what the correction should leave.
WRONG_AFTER_EXECUTE = (
    "SELECT count(*) FROM market_data md LEFT JOIN symbols s ON s.id = md.symbol_id"
    " LEFT JOIN asset_classes ac ON ac.id = s.asset_class_id"
    " WHERE md.asset_class IS DISTINCT FROM coalesce(ac.code, md.asset_class)"
)


@pytest.fixture
def restartable(restartable_server):
    return restartable_server  # one server for every restart test of the session (root conftest)


def _queue(pg, db, run_id: int, call: str) -> None:
    code = (
        "from corrections import services\nfrom corrections.models import CorrectionRun\n"
        f"run = CorrectionRun.objects.get(pk={run_id})\nservices.{call}\n"
    )
    django_child(code, pg.env(db))


def _run(pg, db, run_id: int, fields: str) -> tuple:
    return pg.query(db, f"SELECT {fields} FROM correction_runs WHERE id = %s", [run_id])


def _restart_while_blocked(pg, db: str, *, row_id: int, statement: str, start) -> None:
    """Lock one candle, `start` the work, wait until the worker waits for the row inside
    `statement`, then restart the server: the worker loses its connection mid-batch."""
    blocker = pg.connect(db, autocommit=False)
    try:
        blocker.execute("SELECT id FROM market_data WHERE id = %s FOR UPDATE", [row_id])
        start()
        waiting = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            f" AND wait_event_type = 'Lock' AND query LIKE '{statement}%%'"
        )
        wait_for(lambda: (pg.query(db, waiting) or (0,))[0] == 1, 120, f"the worker to wait inside {statement}")
        pg.restart(down_seconds=1)
    finally:
        blocker.close()


def _assert_no_error_loop(log, *, restarts: int) -> None:
    errors = log_records(log, CONNECTION_ERROR)
    assert restarts <= len(errors) <= 6 * restarts, "\n".join(errors[:40])
    reconnecting = log_records(log, RECONNECTING)
    assert 1 <= len(reconnecting) <= 3 * restarts, "\n".join(reconnecting)  # once per outage and path


def _setup(pg, db: str) -> tuple[int, int]:
    run_id = int(django_child(SETUP, pg.env(db)).split()[-1])
    low = pg.query(db, "SELECT min(id) FROM market_data")[0]
    return run_id, low


def _execute_cut_then_resumed(pg, db: str, run_id: int, low: int) -> None:
    untouched = pg.query(db, UNTOUCHED_MD5)
    blocked = low + 5 * BATCH + 10  # in the sixth batch: five are committed when the server goes
    execute = "correction_execute_queue(run=run)"
    _restart_while_blocked(
        pg,
        db,
        row_id=blocked,
        statement="INSERT INTO correction_backups",
        start=lambda: _queue(pg, db, run_id, execute),
    )
    wait_for(lambda: (_run(pg, db, run_id, "status") or ("running",))[0] != "running", 120, "the execute to end")

    status, phase, error, last_id, updated = _run(pg, db, run_id, "status, phase, error, last_id, rows_updated")
    assert (status, phase, last_id, updated) == (RunStatus.FAILED, Phase.EXECUTING, low + 5 * BATCH - 1, 5 * BATCH)
    assert error == (
        "database connection lost (terminating connection due to administrator command);"
        f" execute it again to resume after id {last_id}"
    )
    assert pg.query(db, "SELECT count(*) FROM correction_backups") == (5 * BATCH,)  # the cut batch left nothing

    _queue(pg, db, run_id, execute)  # the operator's retry: a resume
    wait_for(lambda: _run(pg, db, run_id, "status") == (RunStatus.SUCCEEDED,), 120, "the resumed execute")
    assert _run(pg, db, run_id, "phase, rows_updated, error") == (Phase.EXECUTED, CHANGED, "")
    assert pg.query(db, WRONG_AFTER_EXECUTE) == (0,)
    assert pg.query(db, UNTOUCHED_MD5) == untouched
    # each changed row backed up once, and the table holds exactly what its backup row says
    assert pg.query(db, "SELECT count(*), count(DISTINCT market_data_id) FROM correction_backups") == (CHANGED, CHANGED)
    differs = (
        "SELECT count(*) FROM correction_backups b JOIN market_data md ON md.id = b.market_data_id"
        " WHERE md.asset_class IS DISTINCT FROM b.new_value OR md.updated_at <> b.new_updated_at"
    )
    assert pg.query(db, differs) == (0,)
    audit = "SELECT sum(row_count) FROM data_corrections WHERE kind = 'asset_class_correction'"
    assert pg.query(db, audit) == (CHANGED,)


def _rollback_cut_then_resumed(pg, db: str, run_id: int, before: tuple) -> None:
    # the fourth rollback batch: backed-up ids are the three changed series, in id order
    blocked = pg.query(
        db, "SELECT market_data_id FROM correction_backups ORDER BY market_data_id OFFSET %s LIMIT 1", [3 * BATCH + 10]
    )[0]
    rollback = "correction_rollback_queue(run=run, reason='wrong mapping', requested_by='ops')"
    _restart_while_blocked(
        pg, db, row_id=blocked, statement="WITH restored AS", start=lambda: _queue(pg, db, run_id, rollback)
    )
    wait_for(lambda: (_run(pg, db, run_id, "status") or ("running",))[0] != "running", 120, "the rollback to end")

    status, phase, error, restored = _run(pg, db, run_id, "status, phase, error, rows_restored")
    assert (status, phase, restored) == (RunStatus.FAILED, Phase.ROLLING_BACK, 3 * BATCH)
    assert error == (
        "database connection lost (terminating connection due to administrator command);"
        f" roll it back again to resume after backup id {blocked - 11}"
    )

    _queue(pg, db, run_id, rollback)
    wait_for(lambda: _run(pg, db, run_id, "status") == (RunStatus.SUCCEEDED,), 120, "the resumed rollback")
    assert _run(pg, db, run_id, "phase, rows_restored, rollback_conflicts, error") == (
        Phase.ROLLED_BACK,
        CHANGED,
        0,  # a row restored twice would show as a conflict
        "",
    )
    assert pg.query(db, TABLE_MD5) == before  # every column of every row, updated_at included
    audit = "SELECT sum(row_count) FROM data_corrections WHERE kind = 'asset_class_rollback'"
    assert pg.query(db, audit) == (CHANGED,)


def test_a_postgres_restart_mid_execute_and_mid_rollback_fails_the_run_with_the_cause_and_it_resumes_exact(
    restartable, tmp_path
):
    pg = restartable
    db = pg.database("restart_correction")
    run_id, low = _setup(pg, db)
    before = pg.query(db, TABLE_MD5)
    log = tmp_path / "worker.log"
    worker = worker_start(pg.env(db), log)
    try:
        _execute_cut_then_resumed(pg, db, run_id, low)
        _rollback_cut_then_resumed(pg, db, run_id, before)
    finally:
        worker_stop(worker)
    _assert_no_error_loop(log, restarts=2)
