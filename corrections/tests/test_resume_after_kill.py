"""A real `manage.py correct_asset_classes execute` process, killed with SIGKILL
in the middle of a batch, then resumed: same end state as an uninterrupted run,
each row backed up once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.db.models import F

from conftest import child_database_url
from corrections import services
from corrections.models import CorrectionBackup, CorrectionRun, Phase
from corrections.selectors import is_interrupted
from corrections.tests.conftest import add_candles, add_symbol
from etl.models import MarketData
from etl.services import reference_data_bootstrap
from etl.services.summaries import summary_check

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

BATCH = 1_000


def _dsn() -> str:
    return child_database_url()


def _wait_for(predicate, *, timeout: float = 60.0, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _columns_but_asset_class() -> str:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT md5(string_agg(concat_ws(',', id, ticker, market, timeframe, ts, open, high, low, close, volume,"
            " symbol_id, import_file_id), '|' ORDER BY id)) FROM market_data"
        )
        return cur.fetchone()[0]


def test_sigkill_mid_batch_then_resume_ends_like_an_uninterrupted_run():
    reference_data_bootstrap()
    for ticker, market, cls, value in [
        ("THYAO", "BIST", "STOCK_BIST", "BIST"),
        ("AAPL", "NASDAQ", "STOCK_NASDAQ", None),
        ("BTC", "BINANCE", "CRYPTO", ""),
        ("IBM", "NYSE", "STOCK_NYSE", "STOCK_NYSE"),  # already right: never backed up
    ]:
        add_candles(ticker=ticker, market=market, value=value, n=5_000, symbol=add_symbol(ticker, market, cls))
    expected = {
        row["id"]: (row["asset_class"], row["expected"])
        for row in MarketData.objects.exclude(ticker="IBM")
        .values("id", "asset_class")
        .annotate(expected=F("symbol__asset_class__code"))
    }
    untouched = _columns_but_asset_class()
    run = services.correction_run_create(requested_by="test", overwrite_mismatched=True, batch_size=BATCH)
    low = MarketData.objects.order_by("id").values_list("id", flat=True).first()
    # Hold a lock on one candle of the 6th batch: the child blocks there, mid-transaction.
    blocker = psycopg.connect(_dsn())
    blocker.execute("SELECT id FROM market_data WHERE id = %s FOR UPDATE", [low + 5 * BATCH + 10])

    env = {**os.environ, "DATABASE_URL": _dsn(), "DEBUG": "on"}
    child = subprocess.Popen(
        [sys.executable, "manage.py", "correct_asset_classes", "execute", "--run", str(run.pk), "--json"],
        cwd=Path(settings.BASE_DIR),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(lambda: CorrectionRun.objects.get(pk=run.pk).batches_done == 5, what="five committed batches")

        def child_waits_on_the_lock() -> bool:
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO correction_backups%%'"
                )
                rows = cur.fetchall()
            child_waits_on_the_lock.pids = [r[0] for r in rows]
            return bool(rows)

        _wait_for(child_waits_on_the_lock, what="the child to block inside batch 6")
        backend = child_waits_on_the_lock.pids[0]
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
        blocker.rollback()
        blocker.close()

    # The server ends the orphaned backend (and its open batch) once it can no longer reach the client.
    def backend_gone() -> bool:
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [backend])
            return cur.fetchone()[0] == 0

    _wait_for(backend_gone, what="the killed process's database session to end")
    assert is_interrupted(CorrectionRun.objects.get(pk=run.pk))

    run.refresh_from_db()
    assert (run.phase, run.status, run.batches_done, run.last_id) == (
        Phase.EXECUTING,
        "running",
        5,
        low + 5 * BATCH - 1,
    )
    assert run.rows_updated == CorrectionBackup.objects.filter(run=run).count() == 5 * BATCH

    result = services.correction_execute(run=run)
    assert result.resumed and result.status == "succeeded"
    assert result.rows_updated == result.rows_backed_up == len(expected) == 15_000

    after = dict(MarketData.objects.values_list("id", "asset_class"))
    assert all(after[i] == new for i, (_, new) in expected.items())
    assert set(MarketData.objects.filter(ticker="IBM").values_list("asset_class", flat=True)) == {"STOCK_NYSE"}
    backups = {
        b[0]: (b[1], b[2])
        for b in CorrectionBackup.objects.filter(run=run).values_list("market_data_id", "old_value", "new_value")
    }
    assert backups == expected  # each changed row exactly once, with its true old value
    assert _columns_but_asset_class() == untouched
    assert services.correction_validate(run=run).ok
    assert not is_interrupted(run)
    # The killed batch's summary deltas went with its transaction: the summaries are exact.
    assert summary_check() == []


def test_a_run_left_running_without_the_lock_is_reported_interrupted():
    reference_data_bootstrap()
    run = services.correction_run_create(requested_by="test")
    CorrectionRun.objects.filter(pk=run.pk).update(phase=Phase.EXECUTING, status="running")
    run.refresh_from_db()
    assert is_interrupted(run)
    with services._exclusive():
        assert not is_interrupted(run)
