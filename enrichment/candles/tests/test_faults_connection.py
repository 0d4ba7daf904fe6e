"""A feature run, and a backfill, whose database session is cut in the middle (as a
PostgreSQL restart cuts it): the server ends the session at the Nth write to
market_data_v2 (a statement trigger this test adds). The feature run fails with the
cause, not with every later series "failed" on the dead session, and running it again
completes every series; the backfill schedules its retry, with the cause."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import OperationalError, connection

from enrichment.candles.services.backfill import backfill_plan, backfill_run
from enrichment.candles.services.feature_runs import feature_run_create, feature_run_execute, features_run
from enrichment.candles.tests.feature_fixtures import insert_market_data, make_symbol, random_candles
from enrichment.models import EnrichmentComputeLog, FeatureRun, MarketDataV2
from etl.models import RunStatus

pytestmark = pytest.mark.django_db(transaction=True)

CUT_A_WRITE = """
CREATE SEQUENCE faults_v2_cut;
CREATE FUNCTION faults_cut_a_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('faults_v2_cut') = {n} THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER faults_cut_a_write AFTER INSERT OR UPDATE ON market_data_v2
    FOR EACH STATEMENT EXECUTE FUNCTION faults_cut_a_write();
"""
UNDO = """
DROP TRIGGER IF EXISTS faults_cut_a_write ON market_data_v2;
DROP FUNCTION IF EXISTS faults_cut_a_write();
DROP SEQUENCE IF EXISTS faults_v2_cut;
"""


@pytest.fixture
def cut_write():
    def make(n: int) -> None:
        with connection.cursor() as cur:
            cur.execute(UNDO + CUT_A_WRITE.format(n=n))

    yield make
    connection.close()  # maybe the cut one
    with connection.cursor() as cur:
        cur.execute(UNDO)


def test_a_feature_run_whose_session_is_cut_fails_with_the_cause_and_runs_again_exact(cut_write, monkeypatch):
    symbols = []
    for n in range(4):
        symbols.append(make_symbol(f"C{n}", "BINANCE", "CRYPTO"))
        insert_market_data(symbols[-1], random_candles(120, seed=70 + n))
    run = feature_run_create(symbols=[], timeframes=[], full=False, requested_by="test")
    cut_write(1)  # the four series are one chunk, all new: in its one write (the from-scratch COPY)
    monkeypatch.setattr("etl.recovery.time.sleep", lambda seconds: None)
    with pytest.raises(OperationalError):
        feature_run_execute(run=run)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.error == "database connection lost (terminating connection due to administrator command)"
    # the series after the cut were not tried on the dead session (each logged as failed)
    assert EnrichmentComputeLog.objects.filter(succeeded=False).count() <= 1

    with connection.cursor() as cur:
        cur.execute(UNDO)
    again = feature_run_create(symbols=[], timeframes=[], full=False, requested_by="test")
    result = feature_run_execute(run=again)
    assert (result.failed, FeatureRun.objects.get(pk=again.pk).status) == (0, RunStatus.SUCCEEDED)
    assert MarketDataV2.objects.count() == 4 * 120
    assert not MarketDataV2.objects.filter(features_revision__isnull=True).exists()
    assert features_run(full=True).failed == 0


def test_a_backfill_whose_session_is_cut_schedules_its_retry_with_the_cause(cut_write, monkeypatch):
    btc = make_symbol("BTC", "BINANCE", "CRYPTO")
    insert_market_data(btc, random_candles(300, seed=71))
    start = datetime.fromtimestamp(1_700_000_000, tz=UTC)
    state = backfill_plan(
        symbol=btc, timeframe="15m", source="market_data", start=start, end=start + timedelta(days=4), chunk_bars=100
    )
    cut_write(2)  # in the first chunks
    monkeypatch.setattr("etl.recovery.time.sleep", lambda seconds: None)
    result = backfill_run(state=state, worker="worker-1", compute=False)
    state.refresh_from_db()
    assert (state.state, state.attempts, state.locked_by) == ("pending", 1, "") and state.chunks_done < 3
    assert state.next_retry_at is not None  # a passing fault: retried later, not dead-lettered
    lost = "database connection lost (terminating connection due to administrator command)"
    assert result.error == state.last_error == lost
