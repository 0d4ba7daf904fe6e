"""Backfill in chunks: state, retries, and a worker killed mid-way that another resumes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from django.conf import settings

from conftest import child_database_url
from enrichment.candles import source_registry
from enrichment.candles.local_source import MARKET_DATA_SOURCE, MarketDataSource
from enrichment.candles.services.backfill import backfill_plan, backfill_run
from enrichment.candles.tests.feature_fixtures import insert_market_data, make_symbol, random_candles
from enrichment.models import BackfillState, MarketDataV2
from etl.errors import ConflictError
from etl.models import DeadLetter, MarketData

START = pd.Timestamp(1_700_000_000, unit="s", tz="UTC")


def span(n: int, tf: int = 900):
    return START.to_pydatetime(), (START + pd.Timedelta(seconds=n * tf)).to_pydatetime()


class Counting:
    """The local source, counting the chunks it serves and failing when told to."""

    code = MARKET_DATA_SOURCE

    def __init__(self, fail: int = 0):
        self.calls: list[tuple] = []
        self.fail = fail
        self.local = MarketDataSource()

    def fetch(self, **kwargs):
        self.calls.append((kwargs["start"], kwargs["end"]))
        if self.fail:
            self.fail -= 1
            raise ConnectionError("provider down")
        return self.local.fetch(**kwargs)


@pytest.fixture
def counting(monkeypatch):
    source = Counting()
    monkeypatch.setitem(source_registry._SOURCES, MARKET_DATA_SOURCE, source)
    return source


@pytest.mark.django_db
def test_backfill_goes_chunk_by_chunk_and_records_its_progress(counting):
    btc = make_symbol("BTC", "BINANCE", "CRYPTO")
    insert_market_data(btc, random_candles(1000, seed=31))
    start, end = span(1000)
    state = backfill_plan(symbol=btc, timeframe="15m", source="market_data", start=start, end=end, chunk_bars=300)
    first = backfill_run(state=state, max_chunks=2)
    assert first.status == "pending" and first.chunks == 2 and first.rows_written == 600
    assert first.last_completed_ts == start + timedelta(seconds=600 * 900)
    rest = backfill_run(state=state)
    assert rest.status == "done" and rest.chunks == 2 and rest.rows_written == 1000
    assert counting.calls[2][0] == first.last_completed_ts  # resumed exactly where it stopped
    assert MarketDataV2.objects.filter(symbol=btc, features_revision__isnull=False).count() == 1000
    # Widening the end keeps the progress; the next run fetches only the new part.
    state = backfill_plan(
        symbol=btc, timeframe="15m", source="market_data", start=start, end=end + timedelta(days=1), chunk_bars=300
    )
    assert state.state == "pending" and state.last_completed_ts == end


@pytest.mark.django_db
def test_a_failing_source_is_retried_later_then_dead_lettered(monkeypatch):
    btc = make_symbol("BTC", "BINANCE", "CRYPTO")
    insert_market_data(btc, random_candles(100, seed=32))
    source = Counting(fail=99)
    monkeypatch.setitem(source_registry._SOURCES, MARKET_DATA_SOURCE, source)
    start, end = span(100)
    state = backfill_plan(symbol=btc, timeframe="15m", source="market_data", start=start, end=end)
    clock = [pd.Timestamp("2026-01-01", tz="UTC").to_pydatetime()]
    result = backfill_run(state=state, now=lambda: clock[0])
    state.refresh_from_db()
    assert result.error == "provider down" and state.attempts == 1 and state.state == "pending"
    assert state.next_retry_at == clock[0] + timedelta(seconds=30)
    with pytest.raises(ConflictError):  # too early
        backfill_run(state=state, now=lambda: clock[0])
    for _ in range(4):
        clock[0] += timedelta(hours=2)
        backfill_run(state=state, now=lambda: clock[0])
    state.refresh_from_db()
    assert state.state == "failed" and state.attempts == 5 and state.last_completed_ts is None
    assert DeadLetter.objects.filter(kind="backfill").count() == 1


@pytest.mark.django_db
def test_a_live_lease_keeps_a_second_worker_out():
    btc = make_symbol("BTC", "BINANCE", "CRYPTO")
    start, end = span(10)
    state = backfill_plan(symbol=btc, timeframe="15m", source="market_data", start=start, end=end)
    BackfillState.objects.filter(pk=state.pk).update(
        state="running", locked_by="other:1", locked_until=pd.Timestamp.now(tz="UTC") + pd.Timedelta(minutes=1)
    )
    with pytest.raises(ConflictError, match="other:1"):
        backfill_run(state=state, worker="me")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_backfill_is_resumed_without_gaps_or_duplicates(counting):
    btc = make_symbol("BTC", "BINANCE", "CRYPTO")
    insert_market_data(btc, random_candles(2000, seed=33, gaps=10))
    start, end = span(2100)
    state = backfill_plan(symbol=btc, timeframe="15m", source="market_data", start=start, end=end, chunk_bars=100)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mytrader.settings",
        "PYTHONPATH": str(settings.BASE_DIR),
        "DATABASE_URL": child_database_url(),
    }
    worker = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("backfill_worker.py")), str(state.pk), "0.3"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while BackfillState.objects.get(pk=state.pk).chunks_done < 4:
            assert worker.poll() is None, worker.stdout.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        worker.kill()  # SIGKILL: no clean-up of any kind, maybe in the middle of a chunk
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    killed = BackfillState.objects.get(pk=state.pk)
    assert killed.state == "running" and killed.locked_by == "doomed" and 4 <= killed.chunks_done < 21
    done_before = killed.last_completed_ts
    # What the dead worker committed ends exactly at its last completed timestamp.
    assert not MarketDataV2.objects.filter(symbol=btc, ts__gte=done_before).exists()
    time.sleep(1.2)  # the dead worker's one-second lease runs out
    result = backfill_run(state=killed, worker="rescuer")
    assert result.status == "done"
    assert counting.calls[0][0] == done_before  # nothing before the last completed chunk is fetched again
    raw = list(MarketData.objects.filter(symbol=btc).order_by("ts").values_list("ts", flat=True))
    stored = list(MarketDataV2.objects.filter(symbol=btc).order_by("ts").values_list("ts", flat=True))
    assert stored == raw  # every bar, once
    assert not MarketDataV2.objects.filter(symbol=btc, revision__gt=1).exists()
