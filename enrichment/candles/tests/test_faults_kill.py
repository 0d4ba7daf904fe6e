"""A qcluster worker killed with SIGKILL in the middle of a feature run over many series,
and in the middle of a backfill. The every-minute heartbeat sweep finds the dead run
within a minute (the run failed with the reason; the backfill handed to another
worker), and the run again ends exact: every candle in market_data_v2 once, with the
features a full recompute gives.

Where the worker is when it dies does not depend on how the feature step is written:
a statement trigger this test adds holds the Nth write to market_data_v2 (inside its
transaction, after earlier ones committed) on an advisory lock the test holds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from django_q.models import Success

from conftest import child_database_url
from enrichment.candles.feature_list import FEATURE_COLUMNS
from enrichment.candles.services.backfill import backfill_plan, backfills_queue
from enrichment.candles.services.feature_runs import feature_run_queue, features_run
from enrichment.candles.tests.feature_fixtures import insert_market_data, make_symbol, random_candles
from enrichment.models import BackfillState, EnrichmentComputeLog, FeatureRun
from etl.models import RunStatus
from etl.recovery import runs_heartbeat_sweep
from etl.tests.restartable import CONNECTION_ERROR, RECORD, log_records, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PROJECT = Path(__file__).resolve().parents[3]
BACKFILL_TASK = "enrichment.candles.tasks.backfill_run"
PAUSE = (99_001, 1)  # the test's own advisory lock (not a product lock: see etl.locks)
HOLD_WRITES = """
CREATE SEQUENCE faults_v2_writes;
CREATE FUNCTION faults_hold_a_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('faults_v2_writes') = {n} THEN
        PERFORM pg_advisory_xact_lock_shared({namespace}, {item});
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER faults_hold_a_write AFTER INSERT OR UPDATE ON market_data_v2
    FOR EACH STATEMENT EXECUTE FUNCTION faults_hold_a_write();
"""
RELEASE_WRITES = """
DROP TRIGGER IF EXISTS faults_hold_a_write ON market_data_v2;
DROP FUNCTION IF EXISTS faults_hold_a_write();
DROP SEQUENCE IF EXISTS faults_v2_writes;
"""
FEATURES_MD5 = (
    "SELECT md5(string_agg(concat_ws(',', symbol_id, timeframe, ts, {columns}), '|'"
    " ORDER BY symbol_id, timeframe, ts)) FROM market_data_v2"
).format(columns=", ".join((*FEATURE_COLUMNS, "quality_score", "quality_flags")))


class Held:
    """The Nth statement writing market_data_v2 waits (in its transaction) until `release`."""

    def __init__(self, n: int):
        self.pause = psycopg.connect(child_database_url(), autocommit=True)
        self.pause.execute("SELECT pg_advisory_lock(%s, %s)", PAUSE)
        with connection.cursor() as cur:
            cur.execute(RELEASE_WRITES + HOLD_WRITES.format(n=n, namespace=PAUSE[0], item=PAUSE[1]))

    def waiting(self) -> bool:
        with connection.cursor() as cur:
            # This database's waiters only: a parallel worker's (another test database) would count too.
            cur.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = %s"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                [PAUSE[0]],
            )
            return cur.fetchone()[0] == 1

    def release(self) -> None:
        if not self.pause.closed:
            self.pause.close()


@pytest.fixture
def held_write() -> Iterator[type[Held]]:
    made: list[Held] = []

    def make(n: int) -> Held:
        made.append(Held(n))
        return made[-1]

    yield make
    for held in made:
        held.release()
    with connection.cursor() as cur:
        cur.execute(RELEASE_WRITES)


def _cluster(log: Path) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": child_database_url(), "DEBUG": "on", "LOG_LEVEL": "INFO", "Q_WORKERS": "1"}
    env.pop("REDIS_URL", None)  # the ORM broker: the queue is in the test database
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=PROJECT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _kill(cluster: subprocess.Popen) -> float:
    os.killpg(cluster.pid, signal.SIGKILL)  # no error path runs, nothing is written
    cluster.wait(timeout=10)
    return time.monotonic()


def _stop(cluster: subprocess.Popen) -> None:
    """SIGTERM to the cluster's main process only: it stops its own processes (a signal to
    the whole group makes them all stop at once and the main one waits for them in vain)."""
    if cluster.poll() is None:
        cluster.terminate()
        try:
            cluster.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)
            cluster.wait(timeout=10)


def _swept_within_a_minute(killed_at: float, found) -> None:
    """Run the heartbeat sweep as its every-minute schedule does until it finds the dead work."""
    while not found(runs_heartbeat_sweep()):
        assert time.monotonic() - killed_at < 60, "not found within a minute"
        time.sleep(1)


def _features_md5() -> str:
    with connection.cursor() as cur:
        cur.execute(FEATURES_MD5)
        return cur.fetchone()[0]


def _assert_each_candle_once_with_the_features_of_a_full_recompute(symbols) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*), count(*) FILTER (WHERE features_revision IS NULL), max(revision) FROM market_data_v2"
        )
        rows, without_features, revision = cur.fetchone()
        cur.execute("SELECT count(*) FROM market_data WHERE symbol_id = ANY(%s)", [[s.pk for s in symbols]])
        candles = cur.fetchone()[0]
    assert (rows, without_features, revision) == (candles, 0, 1)  # each candle once, never rewritten
    incremental = _features_md5()
    features_run(symbols=symbols, full=True)
    assert _features_md5() == incremental


def _quiet(log: Path) -> None:
    errors = log_records(log, CONNECTION_ERROR) + [
        line for line in log.read_text(errors="replace").splitlines() if RECORD.match(line) and " ERROR " in line
    ]
    assert not errors, "\n".join(errors[:20])


def test_a_worker_killed_mid_features_is_found_within_a_minute_and_the_rerun_is_exact(tmp_path, held_write):
    symbols = []
    for n in range(8):
        symbol = make_symbol(f"C{n}", "BINANCE", "CRYPTO")
        insert_market_data(symbol, random_candles(400, seed=40 + n, gaps=3))
        symbols.append(symbol)
    # the eight series are one chunk (feature_batch), all new: its first write to market_data_v2
    # (the from-scratch COPY of the candles with their features, feature_scratch) waits before
    # its transaction commits, so the kill lands inside the chunk's transaction (the state a
    # rerun must complete)
    held = held_write(1)
    run = feature_run_queue(symbols=[], timeframes=[], full=False, requested_by="test")
    victim = _cluster(tmp_path / "victim.log")
    try:
        wait_for(held.waiting, 120, "the worker to wait inside a write")
        assert FeatureRun.objects.get(pk=run.pk).status == RunStatus.RUNNING
    finally:
        killed_at = _kill(victim)
        held.release()  # its session ends once its statement does: the run lock goes with it
    _swept_within_a_minute(killed_at, lambda sweep: sweep.runs_failed.get("enrichment.featurerun") == (run.pk,))

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.error.startswith("its process stopped")
    again = feature_run_queue(symbols=[], timeframes=[], full=False, requested_by="test")  # the API's retry
    replacement = _cluster(tmp_path / "replacement.log")
    try:
        wait_for(lambda: FeatureRun.objects.get(pk=again.pk).status != RunStatus.QUEUED, 60, "a worker to take it")
        wait_for(lambda: FeatureRun.objects.get(pk=again.pk).status != RunStatus.RUNNING, 120, "the re-run to end")
    finally:
        _stop(replacement)
    again.refresh_from_db()
    assert (again.status, again.error, again.result["failed"]) == (RunStatus.SUCCEEDED, "", 0)
    assert not EnrichmentComputeLog.objects.filter(run=again, succeeded=False).exists()
    _assert_each_candle_once_with_the_features_of_a_full_recompute(symbols)
    _quiet(tmp_path / "replacement.log")


def test_a_worker_killed_mid_backfill_is_replaced_within_a_minute_and_the_backfill_is_exact(tmp_path, held_write):
    btc = make_symbol("BTC", "BINANCE", "CRYPTO")
    insert_market_data(btc, random_candles(2_000, seed=33, gaps=10))
    start = datetime.fromtimestamp(1_700_000_000, tz=UTC)
    end = start + timedelta(minutes=15 * 2_100)
    state = backfill_plan(symbol=btc, timeframe="15m", source="market_data", start=start, end=end, chunk_bars=100)
    held = held_write(5)  # four chunks commit, the fifth waits
    assert backfills_queue(states=BackfillState.objects.filter(pk=state.pk)) == 1
    victim = _cluster(tmp_path / "victim.log")
    try:
        wait_for(held.waiting, 120, "the worker to wait inside a chunk")
    finally:
        killed_at = _kill(victim)
        held.release()
    killed = BackfillState.objects.get(pk=state.pk)
    assert killed.state == BackfillState.State.RUNNING and 1 <= killed.chunks_done < 21
    _swept_within_a_minute(killed_at, lambda sweep: sweep.work_recovered.get("backfills") == 1)

    replacement = _cluster(tmp_path / "replacement.log")
    try:  # its task ends when the features of the completed backfill are computed too
        wait_for(lambda: Success.objects.filter(func=BACKFILL_TASK).exists(), 120, "the resumed backfill to end")
    finally:
        _stop(replacement)
    state.refresh_from_db()
    assert (state.last_completed_ts, state.chunks_done, state.locked_by) == (end, 21, "")  # no chunk twice
    assert state.last_error == ""  # cleared by the first chunk the replacement stored
    _assert_each_candle_once_with_the_features_of_a_full_recompute([btc])
    _quiet(tmp_path / "replacement.log")
