"""The live poller at many symbols: Binance's 5-minute statistics spread over the five
minutes (each symbol's once per period, a fifth of the symbols a minute, filled in on the bar
they belong to), the bars and features of many series written together (equal to a full
recompute, in a number of statements that does not grow with the symbols) and one failing
series not stopping the others. Against the local Binance-shaped market on a fake clock."""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from enrichment.candles import candle_quality
from enrichment.candles.models import DataQualityMetric, LiveMarket, LiveSeries
from enrichment.candles.services.feature_compute import features_compute
from enrichment.candles.services.live import live_markets_ensure, live_poll
from enrichment.candles.tests.feature_fixtures import make_symbol
from enrichment.candles.tests.live_server import LiveMarketServer
from enrichment.candles.tests.test_live_poll import T0, FakeClock, feature_matrix, rows
from enrichment.models import EnrichmentStatus, FetchLog, MarketDataV2
from enrichment.providers import clock
from etl.models import SymbolMapping

pytestmark = pytest.mark.django_db

STATS = "/futures/data/openInterestHist"
SYMBOLS = 12


@pytest.fixture
def fake_clock(monkeypatch) -> FakeClock:
    fake = FakeClock(T0 + timedelta(seconds=2))
    monkeypatch.setattr(clock, "now", fake)
    return fake


@pytest.fixture
def crypto(providers, httpserver, fake_clock) -> LiveMarketServer:
    server = LiveMarketServer(now_ms=lambda: int(fake_clock().timestamp() * 1000))
    server.register(httpserver)
    for i in range(SYMBOLS):
        symbol = make_symbol(f"C{i:02d}", "BINANCE", "CRYPTO")
        SymbolMapping.objects.create(symbol=symbol, provider=providers["BINANCE"], provider_symbol=f"C{i:02d}USDT")
    live_markets_ensure()
    LiveMarket.objects.filter(market__code="BINANCE").update(is_enabled=True)
    return server


def poll_minutes(fake_clock, minutes: int) -> list[dict]:
    results = []
    for _ in range(minutes):
        fake_clock.advance(minutes=1)
        results.append(live_poll(now=fake_clock(), markets=["BINANCE"]).to_dict())
    return results


def test_statistics_are_spread_over_the_five_minutes_and_land_on_their_bars(crypto, fake_clock):
    live_poll(now=fake_clock(), markets=["BINANCE"])  # the first 300 bars of each, statistics with them
    since = fake_clock().timestamp()
    results = poll_minutes(fake_clock, 15)
    assert all(r["bars"] == SYMBOLS and r["errors"] == [] for r in results)
    # One klines call a symbol and minute (limit 1: a page that reaches the end asks no further).
    klines = [s for t, path, s in crypto.symbol_log if path == "/fapi/v1/klines" and t > since]
    assert len(klines) == 15 * SYMBOLS
    calls = [(t, s) for t, path, s in crypto.symbol_log if path == STATS and t > since]
    per_minute = Counter(int(t // 60) for t, _ in calls)
    assert max(per_minute.values()) <= math.ceil(SYMBOLS / 5) + 1, per_minute
    assert len(per_minute) == 15  # every minute carries some, not every fifth one all of them
    # Each symbol asks once per five minutes: 3 times in 15.
    assert Counter(s for _, s in calls) == {f"C{i:02d}USDT": 3 for i in range(SYMBOLS)}
    # Binance's weight: a kline call a symbol plus a fifth of the symbols' statistics (two calls)
    # and, in the minutes after the hour, their funding (spread the same way).
    weights = Counter(int(t // 60) for t, _, w in crypto.request_log if t > since for _ in range(w))
    assert max(weights.values()) <= SYMBOLS + 3 * (math.ceil(SYMBOLS / 5) + 1)
    fundings = Counter(int(t // 60) for t, path, _ in crypto.symbol_log if path == "/fapi/v1/fundingRate" and t > since)
    assert max(fundings.values()) <= math.ceil(SYMBOLS / 5) + 1 and sum(fundings.values()) == SYMBOLS
    # Every boundary bar has its statistics once its symbol's turn has come (up to 5 polls later).
    for i in range(SYMBOLS):
        stored = rows(f"C{i:02d}")
        settled = [r for r in stored if r.ts.timestamp() % 300 == 0 and r.ts <= fake_clock() - timedelta(minutes=6)]
        assert settled and all(r.open_interest == 1e6 + int(r.ts.timestamp()) // 60 % 1000 for r in settled)
        assert all(r.long_short_account_ratio is not None for r in settled)
        assert not [r for r in stored if r.ts.timestamp() % 300 and r.open_interest is not None]


def test_many_series_written_together_equal_a_full_recompute_in_a_fixed_number_of_statements(
    crypto,
    fake_clock,
):
    live_poll(now=fake_clock(), markets=["BINANCE"])
    poll_minutes(fake_clock, 12)  # across two statistics boundaries: late fills recompute their bars
    fake_clock.advance(minutes=1)
    with CaptureQueriesContext(connection) as queries:
        assert live_poll(now=fake_clock(), markets=["BINANCE"]).bars == SYMBOLS
    candle_statements = [q for q in queries.captured_queries if "market_data_v2" in q["sql"]]
    assert len(candle_statements) < SYMBOLS  # one series at a time took more than 5 each
    tickers = [f"C{i:02d}" for i in range(SYMBOLS)]
    incremental = {t: feature_matrix(t) for t in tickers}
    assert MarketDataV2.objects.filter(features_revision__isnull=True).count() == 0
    for ticker in tickers:
        stamps = [r.ts for r in rows(ticker)]
        assert len(stamps) == len(set(stamps)) == 300 + 13
        features_compute(symbol=rows(ticker)[0].symbol, timeframe="1m", full=True)
        np.testing.assert_array_equal(feature_matrix(ticker), incremental[ticker], err_msg=ticker)
    assert LiveSeries.objects.filter(symbol__ticker__in=tickers, last_lag_seconds__lt=30).count() == SYMBOLS


def test_a_series_that_cannot_be_written_does_not_stop_the_others(crypto, fake_clock):
    live_poll(now=fake_clock(), markets=["BINANCE"])
    crypto.broken.add("C03USDT")  # its next bar comes with a close of NaN: market_data refuses it
    fake_clock.advance(minutes=1)
    result = live_poll(now=fake_clock(), markets=["BINANCE"]).to_dict()
    assert result["bars"] == SYMBOLS - 1
    (market,) = result["markets"]
    assert market["failed"] == 1 and len(result["errors"]) == 1 and result["errors"][0].startswith("C03")
    assert rows("C02")[-1].ts == rows("C04")[-1].ts == T0  # the others have their new bar
    assert rows("C03")[-1].ts == T0 - timedelta(minutes=1)
    assert LiveSeries.objects.get(symbol__ticker="C03").last_error
    crypto.broken.clear()  # it mends: the next poll catches up without a gap
    fake_clock.advance(minutes=1)
    assert live_poll(now=fake_clock(), markets=["BINANCE"]).bars == SYMBOLS + 1
    stamps = [r.ts for r in rows("C03")]
    assert {b - a for a, b in zip(stamps, stamps[1:], strict=False)} == {timedelta(minutes=1)}
    assert LiveSeries.objects.get(symbol__ticker="C03").last_error == ""


def test_a_polls_provider_bookkeeping_takes_a_few_statements_not_some_per_symbol(crypto, fake_clock):
    live_poll(now=fake_clock(), markets=["BINANCE"])
    fake_clock.advance(minutes=1)
    with CaptureQueriesContext(connection) as queries:
        assert live_poll(now=fake_clock(), markets=["BINANCE"]).bars == SYMBOLS
    tables = ("enrichment_fetch_log", "enrichment_rate_grants", "enrichment_circuit_state", "metric_deltas")
    bookkeeping = [q for q in queries.captured_queries if any(t in q["sql"] for t in tables)]
    # One request a symbol or more: each was a circuit read, the limiter's transaction, a
    # fetch-log row and its counters (over 60 statements for 12 symbols).
    requests = [t for t, _, _ in crypto.request_log if t > fake_clock().timestamp() - 30]
    assert len(requests) >= SYMBOLS
    # A fixed few for the poll (circuit, a minute's success mark) and per block of requests
    # (grant, the last block's rest given back, the fetch-log rows and their counters).
    assert len(bookkeeping) <= 20, [q["sql"][:80] for q in bookkeeping]
    # Every request still has its fetch-log row, and the budget holds exactly what was asked.
    klines = [s for _, path, s in crypto.symbol_log if path == "/fapi/v1/klines"]
    assert FetchLog.objects.filter(provider="BINANCE", endpoint="klines").count() == len(klines)
    with connection.cursor() as cur:
        cur.execute("SELECT sum(weight) FROM enrichment_rate_grants WHERE provider = 'BINANCE'")
        assert cur.fetchone()[0] == sum(w for _, _, w in crypto.request_log)


def test_the_polls_daily_quality_metrics_equal_a_full_recompute(crypto, fake_clock):
    live_poll(now=fake_clock(), markets=["BINANCE"])
    poll_minutes(fake_clock, 3)
    columns = ("symbol__ticker", "day", *candle_quality.DAILY_COLUMNS[1:])
    live = list(DataQualityMetric.objects.order_by("symbol__ticker", "day").values_list(*columns))
    assert len(live) >= SYMBOLS  # every series has its days (the history spans midnight or not)
    with connection.cursor() as cur:  # the status rows' completeness sums are their days' (live_write keeps them)
        cur.execute(
            "SELECT es.complete_bars, es.expected_bars, q.c, q.e FROM enrichment_status es"
            " JOIN (SELECT symbol_id, timeframe, sum(LEAST(actual_bars, expected_bars)) AS c, sum(expected_bars) AS e"
            "       FROM data_quality_metrics GROUP BY 1, 2) q"
            " ON q.symbol_id = es.symbol_id AND q.timeframe = es.timeframe"
        )
        sums = cur.fetchall()
    assert len(sums) == SYMBOLS and all(row[:2] == row[2:] for row in sums)
    for i in range(SYMBOLS):
        features_compute(symbol=rows(f"C{i:02d}")[0].symbol, timeframe="1m", full=True)
    recomputed = list(DataQualityMetric.objects.order_by("symbol__ticker", "day").values_list(*columns))
    assert live == recomputed


def test_the_polls_status_rows_keep_their_count_and_quality_sums_exact(crypto, fake_clock):
    """The hourly feature step takes a series' row count and quality sums from its status row
    (`feature_batch._PROBE_SQL`): the poller writes them with every bar, equal to a recount."""
    live_poll(now=fake_clock(), markets=["BINANCE"])
    poll_minutes(fake_clock, 2)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT es.state, es.rows, es.quality_n, es.quality_sum, es.first_ts, es.last_ts,"
            "       'ok', a.n, a.quality_n, a.quality_sum, a.first_ts, a.last_ts FROM enrichment_status es"
            " JOIN (SELECT symbol_id, timeframe, count(*) AS n, count(quality_score) AS quality_n,"
            "              sum(quality_score::numeric) AS quality_sum, min(ts) AS first_ts, max(ts) AS last_ts"
            "       FROM market_data_v2 GROUP BY 1, 2) a ON a.symbol_id = es.symbol_id AND a.timeframe = es.timeframe"
        )
        kept = cur.fetchall()
    assert len(kept) == SYMBOLS and all(row[:6] == row[6:] for row in kept), kept[:2]


def test_a_polls_write_leaves_its_status_rows_counted_again_until_its_summaries(crypto, fake_clock, monkeypatch):
    """The poller stores bars and features in one transaction and refreshes the status rows in a
    later one (`live_summaries`): in between (or if it dies there) a series' kept count and
    quality sums are marked unknown, so the hourly feature step counts its rows instead."""
    from enrichment.candles.services import live

    live_poll(now=fake_clock(), markets=["BINANCE"])
    assert not EnrichmentStatus.objects.filter(quality_n__isnull=True).exists()
    monkeypatch.setattr(live, "live_summaries", lambda *args, **kwargs: None)  # dies before its summaries
    fake_clock.advance(minutes=1)
    live_poll(now=fake_clock(), markets=["BINANCE"])
    assert EnrichmentStatus.objects.count() == SYMBOLS
    assert not EnrichmentStatus.objects.filter(quality_n__isnull=False).exists()
