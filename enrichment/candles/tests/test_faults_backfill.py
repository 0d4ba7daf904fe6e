"""Concurrency of queued backfills: the same "run now" sent twenty times at once
queues each backfill once, and the queued backfill is still claimed by a worker."""

from __future__ import annotations

import threading

import pandas as pd
import pytest
from django.db import connection
from django_q.models import OrmQ

from enrichment.candles.services.backfill import QUEUED_BY, backfill_plan, backfill_run, backfills_queue
from enrichment.candles.tests.feature_fixtures import insert_market_data, make_symbol, random_candles
from enrichment.models import BackfillState

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
