"""The feature step's scan (feature_scan.py): it reads what changed since the scope's mark, and
still finds every stale series: new candles, a late commit, linked candles, a failed series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from enrichment.candles.local_source import MarketDataSource
from enrichment.candles.services.feature_runs import features_run
from enrichment.candles.services.feature_scan import scan_mark_name, series_scan
from enrichment.candles.tests.feature_fixtures import insert_market_data, make_symbol, random_candles
from enrichment.models import EnrichmentStatus, MarketDataV2
from etl.models import MarketData, ScanMark
from etl.services.symbols import symbols_sync

pytestmark = pytest.mark.django_db


def make_series(count: int, bars: int = 60) -> list:
    symbols = []
    for i in range(count):
        symbol = make_symbol(f"S{i:03d}", "BINANCE", "CRYPTO")
        insert_market_data(symbol, random_candles(bars + 1, seed=i), rows=slice(0, bars))
        symbols.append(symbol)
    return symbols


def test_a_run_with_nothing_new_reads_only_from_the_mark_and_finds_the_one_new_bar():
    symbols = make_series(3)
    features_run()
    mark = ScanMark.objects.get(name="features:all").mark
    scan = series_scan(symbol_ids=None, timeframes=None, full=False)
    assert (scan.read_since, scan.stale, scan.fresh) == (mark, [], 3)
    insert_market_data(symbols[1], random_candles(61, seed=1), rows=slice(60, 61))
    scan = series_scan(symbol_ids=None, timeframes=None, full=False)
    assert [(s.symbol_id, s.since) for s in scan.stale] == [
        (symbols[1].pk, EnrichmentStatus.objects.get(symbol=symbols[1]).source_synced_until)
    ]
    assert scan.fresh == 2
    result = features_run()
    assert (result.series, result.unchanged, result.candles_inserted, result.rows_computed) == (3, 2, 1, 1)
    assert ScanMark.objects.get(name="features:all").mark > mark


def test_a_scope_reads_from_the_whole_tables_mark_and_keeps_its_own():
    symbols = make_series(2)
    features_run()
    scan = series_scan(symbol_ids=[symbols[0].pk], timeframes=None, full=False)
    assert scan.read_since == ScanMark.objects.get(name="features:all").mark and scan.fresh == 1
    features_run(symbols=[symbols[0]])
    own = scan_mark_name(symbol_ids=[symbols[0].pk], timeframes=None)
    assert own != "features:all" and ScanMark.objects.filter(name=own).exists()


def test_without_a_mark_every_candle_is_read_as_on_an_existing_database():
    symbols = make_series(2)
    features_run()
    # An upgraded database: no mark yet, and a series whose old candles never reached the step.
    ScanMark.objects.all().delete()
    EnrichmentStatus.objects.filter(symbol=symbols[0]).delete()
    MarketDataV2.objects.filter(symbol=symbols[0]).delete()
    MarketData.objects.update(updated_at=timezone.now() - timedelta(days=30))
    scan = series_scan(symbol_ids=None, timeframes=None, full=False)
    assert scan.read_since is None and [s.symbol_id for s in scan.stale] == [symbols[0].pk] and scan.fresh == 1
    assert features_run().candles_inserted == 60
    assert ScanMark.objects.filter(name="features:all").exists()


def test_a_series_whose_copy_failed_is_read_again_after_the_mark_moved(monkeypatch):
    (symbol,) = make_series(1)
    real = MarketDataSource.fetch

    def broken(self, **kwargs):
        raise RuntimeError("source down")

    monkeypatch.setattr(MarketDataSource, "fetch", broken)
    result = features_run()
    assert result.failed == 1 and EnrichmentStatus.objects.get(symbol=symbol).state == "failed"
    assert ScanMark.objects.filter(name="features:all").exists()
    monkeypatch.setattr(MarketDataSource, "fetch", real)
    again = features_run()
    assert (again.failed, again.candles_inserted, again.rows_computed) == (0, 60, 60)
    assert EnrichmentStatus.objects.get(symbol=symbol).state == "ok"


def _other_session():
    settings = connection.settings_dict
    return psycopg.connect(
        dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"], port=settings["PORT"] or 5432
    )


@pytest.mark.django_db(transaction=True)
def test_a_candle_committed_late_by_a_transaction_open_during_the_scan_is_found():
    (symbol,) = make_series(1)
    features_run()
    bar = random_candles(61, seed=0)
    ts = datetime.fromtimestamp(int(bar["ts"][60]), tz=UTC)
    with _other_session() as other:
        # An import's transaction: begun before the scan, committed after the run recorded its mark.
        other.execute(
            "INSERT INTO market_data (ticker, market, timeframe, ts, open, high, low, close, volume, symbol_id)"
            " VALUES (%s, 'BINANCE', '15m', %s, 1, 2, 0.5, 1.5, 10, %s)",
            [symbol.ticker, ts, symbol.pk],
        )
        assert features_run().candles_inserted == 0  # not visible yet
        other.commit()
    result = features_run()
    assert result.candles_inserted == 1
    assert MarketDataV2.objects.filter(symbol=symbol, ts=ts).exists()


@pytest.mark.django_db(transaction=True)
def test_candles_the_sync_links_after_the_mark_reach_the_features():
    make_series(1)
    features_run()
    late = make_symbol("LATE", "BINANCE", "CRYPTO")
    insert_market_data(late, random_candles(60, seed=9))
    # Written long ago without a symbol (the import could not place the pair); the sync links them now.
    MarketData.objects.filter(symbol=late).update(symbol=None, updated_at=timezone.now() - timedelta(days=3))
    symbols_sync()
    assert MarketData.objects.filter(symbol=late).count() == 60
    result = features_run()
    assert result.candles_inserted == 60
    assert EnrichmentStatus.objects.get(symbol=late).state == "ok"


def test_the_scans_planner_settings_do_not_outlive_it_in_a_callers_transaction():
    make_series(2)
    features_run()
    series_scan(symbol_ids=None, timeframes=None, full=False)  # inside the test's transaction
    with connection.cursor() as cur:
        cur.execute("SELECT current_setting('enable_seqscan'), current_setting('jit')")
        assert cur.fetchone()[0] == "on"
