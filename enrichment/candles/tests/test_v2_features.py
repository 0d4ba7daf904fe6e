"""The feature step on the database: market_data -> market_data_v2, incremental = full, restatements."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.db import connection
from django.utils import timezone

from enrichment.candles.feature_kernels import compute_features
from enrichment.candles.feature_list import FEATURES
from enrichment.candles.services.feature_compute import features_compute
from enrichment.candles.services.feature_runs import features_run, features_step
from enrichment.candles.tests.feature_fixtures import insert_market_data, make_symbol, random_candles
from enrichment.models import EnrichmentComputeLog, EnrichmentStatus, MarketDataV2
from etl.models import DataCorrection, MarketData
from etl.pipeline import get_step

pytestmark = pytest.mark.django_db
COLUMNS = [*FEATURES, "rsi_avg_gain", "rsi_avg_loss", "quality_score", "quality_flags"]


def stored(symbol, timeframe="15m"):
    rows = MarketDataV2.objects.filter(symbol=symbol, timeframe=timeframe).order_by("ts").values_list(*COLUMNS)
    return {c: np.array([np.nan if r[i] is None else r[i] for r in rows], dtype=float) for i, c in enumerate(COLUMNS)}


def xmins(symbol):
    with connection.cursor() as cur:
        cur.execute("SELECT ts, xmin::text FROM market_data_v2 WHERE symbol_id = %s ORDER BY ts", [symbol.pk])
        return dict(cur.fetchall())


@pytest.fixture
def btc():
    return make_symbol("BTC", "BINANCE", "CRYPTO")


def test_step_is_registered_and_fills_market_data_v2_with_the_pure_features(btc):
    data = random_candles(600, seed=21, gaps=6)
    insert_market_data(btc, {k: v for k, v in data.items() if k in ("ts", "open", "high", "low", "close", "volume")})
    assert get_step("features").order == 60
    summary = features_step(options={}, progress=None)
    assert summary["series"] == 1 and summary["candles_inserted"] == 600 and summary["rows_computed"] == 600
    # market_data keeps decimals: compare against features of the same values read back as floats.
    closes = np.array([float(c) for c in MarketData.objects.order_by("ts").values_list("close", flat=True)])
    got = stored(btc)
    # Rows 81-100 hold no gap (the first stretch ends at row 18, the next gap is at 180).
    assert got["sma_20"][100] == pytest.approx(closes[81:101].mean(), rel=1e-12)
    raw = MarketData.objects.order_by("ts")
    cols = ("open", "high", "low", "close", "volume")
    as_float = {c: np.array([float(v) for v in raw.values_list(c, flat=True)]) for c in cols}
    expected = compute_features({"ts": data["ts"], **as_float}, timeframe_seconds=900)
    for name in FEATURES:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    status = EnrichmentStatus.objects.get(symbol=btc, timeframe="15m")
    assert status.state == "ok" and status.rows == 600 and 0 < status.completeness < 1  # the gaps
    assert EnrichmentComputeLog.objects.filter(symbol=btc, mode="full", rows_written=600).exists()


def test_new_candles_are_computed_incrementally_and_equal_a_full_recompute(btc):
    data = random_candles(3000, seed=22, gaps=15)
    insert_market_data(btc, data, rows=slice(0, 2500))
    features_run()
    before = xmins(btc)
    insert_market_data(btc, data, rows=slice(2500, 3000))
    result = features_run()
    assert result.candles_inserted == 500 and result.rows_computed == 500
    log = EnrichmentComputeLog.objects.filter(symbol=btc).first()
    assert log.mode == "incremental" and log.rows_written == 500 and log.rows_read < 700
    after = xmins(btc)
    assert all(after[ts] == x for ts, x in before.items())  # the old rows were not touched
    incremental = stored(btc)
    features_compute(symbol=btc, timeframe="15m", full=True)
    full = stored(btc)
    for name in COLUMNS:
        np.testing.assert_array_equal(incremental[name], full[name], err_msg=name)


def test_a_restated_candle_bumps_its_revision_and_recomputes_from_there(btc):
    data = random_candles(400, seed=23)
    insert_market_data(btc, data)
    features_run()
    bar = MarketData.objects.order_by("ts")[300]
    # A restatement as the import writes it: new values and a new updated_at. The last sync
    # is made to look old, so only updated_at (not the re-read overlap) can find the change.
    EnrichmentStatus.objects.filter(symbol=btc).update(source_synced_until=timezone.now() - timedelta(days=2))
    MarketData.objects.update(updated_at=timezone.now() - timedelta(days=3))
    MarketData.objects.filter(pk=bar.pk).update(close=bar.close * 2, high=bar.close * 2, updated_at=timezone.now())
    before = xmins(btc)
    result = features_run()
    assert result.candles_updated == 1 and result.amendments == 1 and result.rows_computed == 100
    row = MarketDataV2.objects.get(symbol=btc, ts=bar.ts)
    assert row.revision == 2 and row.features_revision == 2 and row.close == float(bar.close * 2)
    assert DataCorrection.objects.filter(kind="candle_amendment", ticker="BTC").count() == 1
    changed = sorted(ts for ts, x in xmins(btc).items() if before[ts] != x)
    assert changed[0] == bar.ts and len(changed) == 100


def test_an_unchanged_rerun_writes_nothing(btc):
    insert_market_data(btc, random_candles(200, seed=24))
    features_run()
    before, logged = xmins(btc), EnrichmentComputeLog.objects.count()
    result = features_run()
    assert (result.candles_inserted, result.candles_updated, result.rows_computed) == (0, 0, 0)
    assert xmins(btc) == before
    # Counted in the run's result, not logged: a series with nothing new writes no log row.
    assert (result.series, result.unchanged) == (1, 1)
    assert EnrichmentComputeLog.objects.count() == logged


def test_full_recompute_rewrites_every_row_with_the_same_values(btc):
    insert_market_data(btc, random_candles(300, seed=25))
    features_run()
    first = stored(btc)
    result = features_run(full=True)
    assert result.rows_computed == 300
    for name in COLUMNS:
        np.testing.assert_array_equal(first[name], stored(btc)[name])


def test_a_failing_series_is_logged_and_the_others_go_on(btc, monkeypatch):
    eth = make_symbol("ETH", "BINANCE", "CRYPTO")
    insert_market_data(btc, random_candles(100, seed=26))
    insert_market_data(eth, random_candles(100, seed=27))
    from enrichment.candles.services import feature_compute

    real = feature_compute._compute_tail

    def broken(cur, series, **kwargs):
        if series.symbol.ticker == "BTC":
            raise RuntimeError("boom")
        return real(cur, series, **kwargs)

    monkeypatch.setattr(feature_compute, "_compute_tail", broken)
    result = features_run()
    assert result.failed == 1 and result.rows_computed == 100 and "boom" in result.errors[0]
    assert EnrichmentStatus.objects.get(symbol=btc).state == "failed"
    assert EnrichmentComputeLog.objects.filter(symbol=btc, succeeded=False).exists()
    assert MarketDataV2.objects.filter(symbol=btc, features_revision__isnull=True).count() == 100


def test_incremental_equals_full_on_a_stock_with_sessions_and_a_holiday():
    import pandas as pd

    from enrichment.candles.services.candle_upsert import candles_upsert

    aapl = make_symbol("AAPL", "NASDAQ", "STOCK_NASDAQ")
    days = [d for d in pd.bdate_range("2024-01-02", "2024-02-09") if d != pd.Timestamp("2024-01-15")]  # MLK day
    stamps = [
        pd.Timestamp(f"{d.date()} 09:30", tz="America/New_York") + pd.Timedelta(minutes=15 * i)
        for d in days
        for i in range(26)
    ]
    data = random_candles(len(stamps), seed=28)
    frame = pd.DataFrame({k: v for k, v in data.items() if k != "ts"})
    frame.insert(0, "ts", pd.DatetimeIndex(stamps).tz_convert("UTC"))
    cut = len(frame) - 3 * 26
    candles_upsert(symbol=aapl, timeframe="15m", frame=frame.iloc[:cut], source="market_data")
    features_compute(symbol=aapl, timeframe="15m")
    candles_upsert(symbol=aapl, timeframe="15m", frame=frame.iloc[cut:], source="market_data")
    result = features_compute(symbol=aapl, timeframe="15m")
    assert result.mode == "incremental" and result.rows_written == 3 * 26 and result.rows_read < 3 * 26 + 200
    incremental = stored(aapl)
    features_compute(symbol=aapl, timeframe="15m", full=True)
    full = stored(aapl)
    for name in COLUMNS:
        np.testing.assert_array_equal(incremental[name], full[name], err_msg=name)
    # The trading day is 26 bars: return_1d looks back to the same time the previous session.
    row = MarketDataV2.objects.filter(symbol=aapl).order_by("ts")[26 * 5 + 3]
    prev = MarketDataV2.objects.filter(symbol=aapl).order_by("ts")[26 * 4 + 3]
    assert row.return_1d == pytest.approx(row.close / prev.close - 1)


def test_a_short_series_still_warming_up_grows_incrementally(btc):
    data = random_candles(40, seed=29)
    insert_market_data(btc, data, rows=slice(0, 10))
    features_run()
    insert_market_data(btc, data, rows=slice(10, 40))
    assert features_run().rows_computed == 30
    grown = stored(btc)
    features_compute(symbol=btc, timeframe="15m", full=True)
    for name in COLUMNS:
        np.testing.assert_array_equal(grown[name], stored(btc)[name], err_msg=name)
    assert np.isnan(grown["sma_20"][18]) and not np.isnan(grown["sma_20"][19])
