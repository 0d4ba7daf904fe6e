"""Concurrency of queued backfills: the same "run now" sent twenty times at once
queues each backfill once, and the queued backfill is still claimed by a worker.
A backfill whose worker died (its session lock gone) is handed to another by the
every-minute sweep, and retry and cancel work on it at once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pandas as pd
import pytest
from django.db import connection, connections
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ

from enrichment.candles import source_registry
from enrichment.candles.services.backfill import (
    QUEUED_BY,
    backfill_plan,
    backfill_run,
    backfills_cancel,
    backfills_orphaned_requeue,
    backfills_queue,
)
from enrichment.candles.tests.feature_fixtures import insert_market_data, make_symbol, random_candles
from enrichment.models import BackfillState, MarketDataV2
from etl import locks
from etl.models import DeadLetter
from etl.recovery import runs_heartbeat_sweep

START = pd.Timestamp(1_700_000_000, unit="s", tz="UTC").to_pydatetime()
END = (pd.Timestamp(1_700_000_000, unit="s", tz="UTC") + pd.Timedelta(days=2)).to_pydatetime()


def _state() -> BackfillState:
    btc = make_symbol("BTC", "BINANCE", "CRYPTO")
    insert_market_data(btc, random_candles(192, seed=7))
    return backfill_plan(symbol=btc, timeframe="15m", source="market_data", start=START, end=END)


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_run_now_requests_queue_one_backfill_task():
    state = _state()
    barrier = threading.Barrier(20)
    queued: list[int] = []

    def run_now() -> None:
        try:
            barrier.wait()
            queued.append(backfills_queue(states=BackfillState.objects.filter(pk=state.pk)))
        finally:
            connection.close()

    threads = [threading.Thread(target=run_now) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(queued) == [0] * 19 + [1]
    assert OrmQ.objects.count() == 1
    state.refresh_from_db()
    assert state.locked_by == QUEUED_BY


@pytest.mark.django_db
def test_a_queued_backfill_is_claimed_by_the_worker_and_runs_to_the_end(django_capture_on_commit_callbacks):
    state = _state()
    with django_capture_on_commit_callbacks():
        assert backfills_queue(states=BackfillState.objects.filter(pk=state.pk)) == 1
    assert backfills_queue(states=BackfillState.objects.filter(pk=state.pk)) == 0  # already queued
    result = backfill_run(state=state, worker="worker-1", compute=False)
    assert result.status == BackfillState.State.DONE
    state.refresh_from_db()
    assert (state.locked_by, state.locked_until) == ("", None)


def _held_by_a_dead_worker(state: BackfillState) -> None:
    """What a worker killed mid-chunk leaves: running, its lease minutes ahead, its lock gone with it."""
    BackfillState.objects.filter(pk=state.pk).update(
        state=BackfillState.State.RUNNING, locked_by="dead:1", locked_until=timezone.now() + timedelta(minutes=4)
    )


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_sweep_hands_a_backfill_whose_worker_died_to_another_at_once():
    state, live = (
        _state(),
        backfill_plan(
            symbol=make_symbol("ETH", "BINANCE", "CRYPTO"), timeframe="15m", source="market_data", start=START, end=END
        ),
    )
    _held_by_a_dead_worker(state)
    BackfillState.objects.filter(pk=live.pk).update(
        state=BackfillState.State.RUNNING, locked_by="live:2", locked_until=timezone.now() + timedelta(minutes=4)
    )
    other = connections.create_connection("default")  # the live worker's session holds its lock
    try:
        with other.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s, %s)", locks.BACKFILL.key(live.pk))
        assert runs_heartbeat_sweep().work_recovered == {"backfills": 1}
        assert runs_heartbeat_sweep().work_recovered == {"backfills": 0}  # once
    finally:
        other.close()
    state.refresh_from_db()
    assert (state.state, state.locked_by, state.attempts) == (BackfillState.State.PENDING, QUEUED_BY, 1)
    assert (
        state.last_error
        == "its worker dead:1 stopped mid-chunk (killed, or its database connection lost); queued again"
    )
    assert OrmQ.objects.count() == 1  # a worker resumes it
    assert BackfillState.objects.get(pk=live.pk).locked_by == "live:2"
    assert backfill_run(state=state, worker="rescuer", compute=False).status == BackfillState.State.DONE


@pytest.mark.django_db
def test_a_backfill_whose_worker_died_too_often_fails_for_good():
    state = _state()
    BackfillState.objects.filter(pk=state.pk).update(attempts=4)
    _held_by_a_dead_worker(state)
    assert backfills_orphaned_requeue() == 1
    state.refresh_from_db()
    assert (state.state, state.attempts, state.locked_by) == (BackfillState.State.FAILED, 5, "")
    assert DeadLetter.objects.filter(kind="backfill").count() == 1


@pytest.fixture
def staff(api_client_for):
    return api_client_for(staff=True, perms=("enrichment.run_backfill",))


@pytest.mark.django_db
def test_retry_and_cancel_work_on_a_backfill_whose_worker_died(staff, django_capture_on_commit_callbacks):
    state = _state()
    _held_by_a_dead_worker(state)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        assert staff.post(f"/api/runs/backfills/{state.pk}/retry/").status_code == 202  # not after its lease
    assert len(queued) == 1
    again = staff.post(f"/api/runs/backfills/{state.pk}/retry/")
    assert (again.status_code, again.json()["code"]) == (409, "backfill_running")

    _held_by_a_dead_worker(state)
    cancelled = staff.post(f"/api/runs/backfills/{state.pk}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == BackfillState.State.CANCELLED
    assert staff.post(f"/api/runs/backfills/{state.pk}/cancel/").status_code == 409
    # the task queued before the cancel does not run it
    assert backfill_run(state=state, worker="worker-1").status == BackfillState.State.CANCELLED
    assert BackfillState.objects.get(pk=state.pk).chunks_done == 0
    with django_capture_on_commit_callbacks(execute=False):
        assert staff.post(f"/api/runs/backfills/{state.pk}/retry/").status_code == 202  # resumes it
    assert backfill_run(state=state, worker="worker-1", compute=False).status == BackfillState.State.DONE


@pytest.mark.django_db
def test_a_cancelled_backfill_stops_its_live_worker_at_the_next_chunk(monkeypatch):
    state = _state()
    BackfillState.objects.filter(pk=state.pk).update(chunk_bars=48)
    fetch = source_registry.get_source("market_data").fetch

    def cancelled_meanwhile(**kwargs):
        backfills_cancel(states=BackfillState.objects.filter(pk=state.pk))  # from the admin, during chunk 1
        return fetch(**kwargs)

    monkeypatch.setattr(source_registry.get_source("market_data"), "fetch", cancelled_meanwhile)
    result = backfill_run(state=state, worker="worker-1", compute=False)
    assert (result.status, result.chunks) == (BackfillState.State.CANCELLED, 0)
    assert not MarketDataV2.objects.exists()  # the chunk in flight is not kept


def test_every_backfill_state_can_be_cancelled_but_a_finished_one():
    states = {choice.value for choice in BackfillState.State}
    assert states == {"pending", "running", "done", "failed", "cancelled"}


@pytest.mark.django_db
def test_the_admin_cancels_a_backfill_whose_worker_died(admin_client):
    state = _state()
    _held_by_a_dead_worker(state)
    admin_client.post(
        reverse("admin:enrichment_backfillstate_changelist"), {"action": "cancel", "_selected_action": [state.pk]}
    )
    state.refresh_from_db()
    assert (state.state, state.locked_by, state.last_error) == ("cancelled", "", "cancelled by an operator")
