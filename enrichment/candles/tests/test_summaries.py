"""Features, backfill state, the live poll and log retention keep enrichment's integrity
summaries exact, and the metrics and the completeness gate read the same numbers a scan
of their tables gives."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Avg, Count, Max, Q, Sum
from django.utils import timezone

from enrichment.candles.selectors import data_completeness, enrichment_metrics
from enrichment.candles.services.feature_runs import features_run
from enrichment.candles.tests.feature_fixtures import insert_market_data, make_symbol, random_candles
from enrichment.candles.tests.test_live_poll import fake_clock, market, poll  # noqa: F401 - fixtures
from enrichment.models import BackfillState, EnrichmentComputeLog, EnrichmentStatus, FetchLog
from enrichment.providers.fetch_log import fetch_log_write
from enrichment.providers.selectors import providers_status
from etl.models import Market, Symbol
from etl.services import retention_prune

pytestmark = pytest.mark.django_db


def scanned_metrics(since) -> dict:
    """The figures of enrichment_metrics as counted from the tables themselves."""
    agg = EnrichmentStatus.objects.aggregate(
        rows=Sum("rows"), avg_quality=Avg("avg_quality_score"), avg_completeness=Avg("completeness")
    )
    logs = EnrichmentComputeLog.objects.filter(created_at__gte=since).aggregate(
        computations=Count("id"),
        failures=Count("id", filter=Q(succeeded=False)),
        rows_written=Sum("rows_written"),
        avg_duration_ms=Avg("duration_ms"),
        max_duration_ms=Max("duration_ms"),
    )
    return {
        "series_by_state": dict(EnrichmentStatus.objects.values_list("state").annotate(n=Count("id")).order_by()),
        "rows": agg["rows"] or 0,
        "avg_quality_score": agg["avg_quality"],
        "avg_completeness": agg["avg_completeness"],
        **logs,
        "rows_written": logs["rows_written"] or 0,
        "backfills_by_state": dict(BackfillState.objects.values_list("state").annotate(n=Count("id")).order_by()),
    }


def scanned_completeness(days: int = 30) -> float | None:
    with connection.cursor() as cur:
        cur.execute(
            "WITH measured AS (SELECT * FROM data_quality_metrics WHERE expected_bars > 0 AND completeness IS NOT NULL)"
            " SELECT sum(completeness * expected_bars) / NULLIF(sum(expected_bars), 0) FROM measured"
            " WHERE day > (SELECT max(day) FROM measured) - %s",
            [days],
        )
        value = cur.fetchone()[0]
    return None if value is None else round(value, 4)


def assert_read_as_scanned() -> None:
    since = timezone.now() - timedelta(hours=24)
    read, scanned = enrichment_metrics(since=since), scanned_metrics(since)
    for key, value in scanned.items():
        assert read[key] == (pytest.approx(value, abs=1e-6) if isinstance(value, float) else value), key
    assert read["series"] == sum(scanned["series_by_state"].values())
    assert data_completeness() == scanned_completeness()
    assert data_completeness(days=3) == scanned_completeness(days=3)


def test_features_from_scratch_and_incremental_keep_the_summaries_exact(reference_data, assert_summaries_exact):
    btc = make_symbol("BTC", "BINANCE", "CRYPTO")
    insert_market_data(btc, random_candles(400, seed=3))
    eth = make_symbol("ETH", "BINANCE", "CRYPTO")
    insert_market_data(eth, random_candles(250, seed=4))
    features_run()
    assert_summaries_exact()
    assert_read_as_scanned()
    insert_market_data(btc, random_candles(450, seed=3), rows=slice(400, None))
    features_run()
    assert_summaries_exact()
    assert_read_as_scanned()
    assert enrichment_metrics()["rows"] == 700


def test_backfill_states_and_a_symbol_moved_to_another_market(reference_data, assert_summaries_exact):
    btc = make_symbol("BTC", "BINANCE", "CRYPTO")
    insert_market_data(btc, random_candles(120, seed=5))
    features_run()
    now = timezone.now()
    state = BackfillState.objects.create(
        symbol=btc, timeframe="15m", source="BINANCE", range_start=now - timedelta(days=3), range_end=now
    )
    BackfillState.objects.filter(pk=state.pk).update(state=BackfillState.State.RUNNING)
    assert_summaries_exact()
    assert enrichment_metrics()["backfills_by_state"] == {"running": 1}
    Symbol.objects.filter(pk=btc.pk).update(market=Market.objects.get(code="NASDAQ"))
    assert_summaries_exact()
    BackfillState.objects.all().delete()
    assert_summaries_exact()
    assert_read_as_scanned()


def test_the_logs_and_their_retention_keep_the_summaries_exact(reference_data, assert_summaries_exact):
    btc = make_symbol("BTC", "BINANCE", "CRYPTO")
    insert_market_data(btc, random_candles(100, seed=6))
    features_run()
    for outcome in ("ok", "ok", "server_error"):
        fetch_log_write(
            provider="BINANCE",
            endpoint="klines",
            symbol="BTCUSDT",
            status_code=200,
            duration_ms=12.5,
            attempt=1,
            size=10,
            error="",
            outcome=outcome,
        )
    fetch_log_write(
        provider="BINANCE",
        endpoint="klines",
        symbol="BTCUSDT",
        status_code=None,
        duration_ms=0,
        attempt=0,
        size=0,
        error="refused",
        outcome="circuit_open",
    )
    # Rows written 40 days ago (the logs are append-only), and the retention that prunes them.
    old = timezone.now() - timedelta(days=40)
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO enrichment_compute_log (symbol_id, timeframe, mode, rows_read, rows_written, duration_ms,"
            " succeeded, error, created_at) VALUES (%s, '15m', 'full', 5, 5, 99999, FALSE, 'old', %s)",
            [btc.pk, old],
        )
        cur.execute(
            "INSERT INTO enrichment_fetch_log (provider, endpoint, symbol, duration_ms, attempt, bytes, outcome, error,"
            " created_at) VALUES ('BINANCE', 'klines', 'BTCUSDT', 1, 1, 0, 'ok', '', %s)",
            [old],
        )
    assert_summaries_exact()
    assert_read_as_scanned()
    calls = {p.code: (p.calls_24h, p.success_rate_24h) for p in providers_status()}
    since = timezone.now() - timedelta(hours=24)
    assert calls["BINANCE"] == (3, round(2 / 3, 4))  # the refused attempt 0 and the old call do not count
    assert FetchLog.objects.filter(provider="BINANCE", attempt__gte=1, created_at__gte=since).count() == 3
    retention_prune(days=30)
    assert_summaries_exact()
    assert_read_as_scanned()


def test_the_live_poll_keeps_the_summaries_exact(market, fake_clock, assert_summaries_exact):  # noqa: F811
    poll(fake_clock)
    fake_clock.advance(minutes=3)
    poll(fake_clock)
    assert_summaries_exact()
    assert_read_as_scanned()
