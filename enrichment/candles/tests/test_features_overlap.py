"""Two chunks of the feature step in flight at once (`feature_workers`), each in its own
transaction on its own connection: outside a test's transaction, so these tests commit."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from enrichment.candles.services import feature_batch, feature_runs
from enrichment.candles.services.feature_runs import features_run
from enrichment.candles.services.feature_workers import run_overlapped
from enrichment.candles.tests.feature_fixtures import (
    fail_series_in,
    insert_market_data,
    make_symbol,
    random_candles,
)
from enrichment.candles.tests.test_features_chunked import assert_same_series
from enrichment.models import EnrichmentStatus, FeatureRun, MarketDataV2
from etl.progress import Cancelled, ProgressReporter

pytestmark = pytest.mark.django_db(transaction=True)


def backends() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cur.fetchone()[0]


def twins(count: int) -> list[tuple]:
    """Pairs of symbols fed the same candles (the first 60 of each series for now), with the rest
    of their candles."""
    pairs = []
    for i in range(count):
        market, seconds, start = (("BINANCE", 3600, 1_700_002_800), ("NASDAQ", 86400, 1_700_006_400))[i % 2]
        one, two = make_symbol(f"P{i}", market), make_symbol(f"C{i}", market)
        data = random_candles(80 + 17 * i, seed=70 + i, timeframe_seconds=seconds, start=start, gaps=i % 3)
        timeframe = "1h" if seconds == 3600 else "1d"
        insert_market_data(one, data, timeframe=timeframe, rows=slice(0, 60))
        insert_market_data(two, data, timeframe=timeframe, rows=slice(0, 60))
        pairs.append((one, two, data, timeframe))
    return pairs


def feed_the_rest(pairs) -> None:
    for one, two, data, timeframe in pairs:
        insert_market_data(one, data, timeframe=timeframe, rows=slice(60, None))
        insert_market_data(two, data, timeframe=timeframe, rows=slice(60, None))


def test_chunks_in_flight_at_once_give_the_rows_of_the_per_series_path(monkeypatch):
    """Chunks of two series, run by two threads on their own connections, leave the same rows,
    metrics, status and logs as the per-series path; the threads' connections are closed after."""
    monkeypatch.setattr(feature_batch, "CHUNK_SERIES", 2)
    threads: set[str] = set()
    real = feature_runs.chunk_run

    def chunk_run(*args, **kwargs):
        threads.add(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(feature_runs, "chunk_run", chunk_run)
    pairs = twins(6)
    before = backends()
    for step in ("from scratch", "the new candles"):
        if step == "the new candles":
            feed_the_rest(pairs)
        per_series = features_run(symbols=[p[0] for p in pairs], chunked=False)
        chunked = features_run(symbols=[p[1] for p in pairs], chunked=True)
        assert per_series.failed == chunked.failed == 0
        assert chunked.rows_computed == per_series.rows_computed > 0
        assert threads == {"feature-chunk-0", "feature-chunk-1"}
        threads.clear()
    for one, two, *_ in pairs:
        assert_same_series(one, two)
    assert backends() == before


def test_a_failing_series_fails_alone_with_chunks_in_flight(monkeypatch):
    monkeypatch.setattr(feature_batch, "CHUNK_SERIES", 2)
    pairs = twins(5)
    broken = pairs[2][1]
    fail_series_in(monkeypatch, broken.pk)
    result = features_run(symbols=[p[1] for p in pairs], chunked=True)
    assert result.failed == 1 and "boom" in result.errors[0]
    assert EnrichmentStatus.objects.get(symbol=broken).state == "failed"
    assert EnrichmentStatus.objects.filter(state="ok").count() == 4


def test_a_cancel_lets_the_chunk_in_flight_finish_and_starts_no_other(monkeypatch):
    monkeypatch.setattr(feature_batch, "CHUNK_SERIES", 2)
    for i in range(8):
        insert_market_data(make_symbol(f"X{i}", "BINANCE"), random_candles(40, seed=i), timeframe="1h")
    run = FeatureRun.objects.create(kind=FeatureRun.Kind.COMPUTE, params={}, requested_by="test")
    FeatureRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    reporter = ProgressReporter(run, label="features")
    with pytest.raises(Cancelled):
        features_run(run=run, progress=reporter, chunked=True)
    # Two chunks were started at once: the first one's end is where the cancel is seen; the
    # other one finishes (committed, all its series done); the last two were never started.
    done = EnrichmentStatus.objects.filter(state="ok").count()
    assert done == MarketDataV2.objects.values("symbol").distinct().count() == 4
    assert reporter.done == done  # the chunk that finished after the cancel is counted too


def test_an_interrupt_in_a_worker_is_raised_on_the_callers_thread_and_stops_the_others():
    started = []

    def work(item):
        started.append(item)
        if item == 1:
            raise KeyboardInterrupt
        time.sleep(0.01)
        return item

    with pytest.raises(KeyboardInterrupt):
        list(run_overlapped(range(100), work=work))
    assert len(started) < 100


def test_the_workers_log_under_the_callers_run():
    from etl.logcontext import current_run, run_context

    with run_context("featurerun", 7):
        seen = {got for _item, got in run_overlapped(range(4), work=lambda _item: current_run())}
    assert seen == {("featurerun", "7")}
