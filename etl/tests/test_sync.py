from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from etl import locks, services
from etl.errors import DomainError
from etl.models import AssetClass, Market, MarketData, Symbol, SymbolSource
from etl.services import SymbolLink

pytestmark = pytest.mark.django_db

MIXED = [
    ("BTCUSDT", "BINANCE"),
    ("ETHUSDT", "CRYPTO"),
    ("THYAO", "BIST"),
    ("THYAO.IS", "BIST"),
    ("GARAN", "BIST"),
    ("AAPL", "NASDAQ"),
    ("QQQ", "NASDAQ"),
    ("ORCL", "NYSE"),
    ("EURUSD", "FOREX_MARKET"),
]


def test_sync_creates_symbols_and_links_every_candle(reference_data, make_candles):
    make_candles(MIXED, bars=4)
    result = services.symbols_sync()
    # THYAO and THYAO.IS are one symbol.
    assert result.symbols_created == 8
    assert result.candles_linked == 36
    assert result.candles_without_symbol == 0
    assert not MarketData.objects.filter(symbol__isnull=True).exists()
    btc = Symbol.objects.get(ticker="BTCUSDT", market__code="BINANCE")
    assert (btc.asset_class.code, btc.base_currency, btc.quote_currency) == ("CRYPTO", "BTC", "USDT")
    assert btc.source == SymbolSource.DISCOVERED
    assert btc.inference_confidence == pytest.approx(0.95)
    assert Symbol.objects.get(ticker="QQQ").asset_class.code == "ETF"
    assert Symbol.objects.get(ticker="ETHUSDT").market.code == "BINANCE"
    thyao = Symbol.objects.get(ticker="THYAO", market__code="BIST")
    assert MarketData.objects.filter(symbol=thyao).count() == 8
    assert set(MarketData.objects.filter(symbol=thyao).values_list("ticker", flat=True)) == {"THYAO", "THYAO.IS"}


def test_second_sync_creates_and_updates_nothing(reference_data, make_candles):
    make_candles(MIXED)
    services.symbols_sync()
    again = services.symbols_sync()
    assert (again.symbols_created, again.symbols_updated, again.candles_linked, again.pairs_found) == (0, 0, 0, 0)
    full = services.symbols_sync(skip_existing=False)
    assert (full.symbols_created, full.symbols_updated, full.candles_linked) == (0, 0, 0)
    assert full.pairs_found == len(MIXED)


def test_existing_symbol_is_linked_not_duplicated_and_operator_fields_kept(reference_data, make_candles):
    bist = Market.objects.get(code="BIST")
    manual = Symbol.objects.create(ticker="THYAO", market=bist, name="Türk Hava Yolları", source=SymbolSource.MANUAL)
    make_candles([("THYAO", "BIST")])
    result = services.symbols_sync()
    assert result.symbols_created == 0
    assert result.candles_linked == 3
    manual.refresh_from_db()
    assert manual.asset_class is None  # skip_existing leaves existing symbols alone
    filled = services.symbols_sync(skip_existing=False)
    assert filled.symbols_updated == 1
    manual.refresh_from_db()
    assert (manual.asset_class.code, manual.quote_currency, manual.name) == ("STOCK_BIST", "TRY", "Türk Hava Yolları")


def test_dry_run_lists_and_writes_nothing(reference_data, make_candles):
    make_candles(MIXED)
    result = services.symbols_sync(dry_run=True)
    assert result.dry_run
    assert {(p.ticker, p.market) for p in result.planned} == {
        ("BTCUSDT", "BINANCE"),
        ("ETHUSDT", "BINANCE"),
        ("THYAO", "BIST"),
        ("GARAN", "BIST"),
        ("AAPL", "NASDAQ"),
        ("QQQ", "NASDAQ"),
        ("ORCL", "NYSE"),
        ("EURUSD", "FOREX_MARKET"),
    }
    thyao = next(p for p in result.planned if p.ticker == "THYAO")
    assert thyao.candles == 6
    assert Symbol.objects.count() == 0
    assert result.candles_without_symbol == MarketData.objects.count()


def test_filters_by_asset_class_family_and_venue(reference_data, make_candles):
    make_candles(MIXED)
    crypto = services.symbols_sync(asset_classes=["CRYPTO"])
    assert crypto.symbols_created == 2
    assert crypto.filtered_out == 7
    stocks = services.symbols_sync(asset_classes=["STOCK"], venues=["XIST"])
    assert set(Symbol.objects.filter(market__code="BIST").values_list("ticker", flat=True)) == {"THYAO", "GARAN"}
    assert stocks.symbols_created == 2
    assert Symbol.objects.count() == 4


def test_unknown_market_is_reported_not_created(reference_data, make_candles):
    make_candles([("AAPL", "LSE"), ("SOLUSDT", "SOMEWHERE")])
    result = services.symbols_sync()
    assert result.unresolved_count == 1
    assert result.unresolved[0]["ticker"] == "AAPL"
    assert "LSE" in result.unresolved[0]["reason"]
    assert result.candles_without_symbol == 3
    # A stablecoin pair is crypto wherever the file put it.
    assert Symbol.objects.get(ticker="SOLUSDT").market.code == "BINANCE"


def test_market_missing_from_reference_data_is_unresolved(db, make_candles):
    make_candles([("BTCUSDT", "BINANCE")])
    result = services.symbols_sync()
    assert result.symbols_created == 0
    assert "not in the reference data" in result.unresolved[0]["reason"]


def test_max_processing_time_stops_between_batches(reference_data, make_candles):
    make_candles([(f"T{i:03d}", "NASDAQ") for i in range(10)], bars=1)
    # One tick per clock reading: start 0, four insert batches at 1-4, link batches from 5.
    ticks = iter(range(100))
    result = services.symbols_sync(batch_size=3, max_seconds=6, clock=lambda: next(ticks))
    assert result.timed_out
    assert (result.symbols_created, result.batches, result.candles_linked) == (10, 1, 3)
    rest = services.symbols_sync(batch_size=3)
    assert (rest.symbols_created, rest.candles_linked, rest.candles_without_symbol) == (0, 7, 0)
    ticks = iter(range(100))
    early = services.symbols_sync(batch_size=3, max_seconds=2, clock=lambda: next(ticks))
    assert (early.timed_out, early.batches) == (False, 0)  # nothing left to do


def test_batch_size_must_be_positive(reference_data):
    with pytest.raises(DomainError):
        services.symbols_sync(batch_size=0)


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_syncs_create_each_symbol_once(make_candles):
    services.reference_data_bootstrap()
    pairs = [(f"C{i:03d}USDT", "BINANCE") for i in range(150)] + [(f"S{i:03d}", "BIST") for i in range(150)]
    make_candles(pairs, bars=2)
    barrier = threading.Barrier(2)
    results, errors = [], []

    def run():
        try:
            barrier.wait()
            results.append(services.symbols_sync(batch_size=25))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(r.symbols_created for r in results) == 300
    assert sum(r.candles_linked for r in results) == 600
    assert Symbol.objects.count() == 300
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM (SELECT ticker, market_id FROM symbols GROUP BY 1, 2 HAVING count(*) > 1) d")
        assert cur.fetchone()[0] == 0
    assert services.candles_without_symbol_count() == 0


def test_large_sync_refreshes_symbol_statistics_before_linking(reference_data, make_candles):
    """The deferred FK checks of the link phase are planned from these figures."""
    make_candles([(f"Q{i:04d}", "NASDAQ") for i in range(1100)], bars=1)
    result = services.symbols_sync(batch_size=500)
    assert (result.symbols_created, result.batches, result.candles_without_symbol) == (1100, 3, 0)
    with connection.cursor() as cur:
        cur.execute("SELECT reltuples FROM pg_class WHERE relname = 'symbols'")
        assert cur.fetchone()[0] >= 1100


# ---------------------------------------------------------------- symbols_ensure (the import's door)


def test_ensure_creates_the_missing_symbols_as_the_sync_would_and_links_every_pair(reference_data):
    result = services.symbols_ensure(pairs=MIXED)
    assert result.created == 8 and not result.unresolved  # THYAO and THYAO.IS are one symbol
    assert set(result.links) == set(MIXED)
    thyao = Symbol.objects.get(ticker="THYAO", market__code="BIST")
    assert result.links[("THYAO.IS", "BIST")] == result.links[("THYAO", "BIST")] == SymbolLink(thyao.pk, "STOCK_BIST")
    assert result.links[("QQQ", "NASDAQ")].asset_class == "ETF"
    btc = Symbol.objects.get(ticker="BTCUSDT")
    assert (btc.source, btc.base_currency, btc.quote_currency) == (SymbolSource.DISCOVERED, "BTC", "USDT")
    again = services.symbols_ensure(pairs=MIXED)
    assert again.created == 0 and again.links == result.links


def test_ensure_gives_an_existing_symbol_with_its_own_asset_class(reference_data):
    """An operator's class stands: the candles are stored with it."""
    etf = AssetClass.objects.get(code="ETF")
    manual = Symbol.objects.create(ticker="ARKX", market=Market.objects.get(code="NASDAQ"), asset_class=etf)
    result = services.symbols_ensure(pairs=[("ARKX", "NASDAQ")])
    assert result.created == 0 and result.links == {("ARKX", "NASDAQ"): SymbolLink(manual.pk, "ETF")}


def test_ensure_reports_a_pair_inference_cannot_place_and_creates_nothing_for_it(reference_data):
    result = services.symbols_ensure(pairs=[("AAPL", "LSE"), ("KO", "NYSE")])
    assert set(result.links) == {("KO", "NYSE")}
    assert [(u["ticker"], u["market"]) for u in result.unresolved] == [("AAPL", "LSE")]
    assert "LSE" in result.unresolved[0]["reason"]
    assert not Symbol.objects.filter(ticker="AAPL").exists()


def test_ensure_of_known_pairs_does_not_take_the_sync_lock(reference_data):
    """An import of pairs that all have symbols never waits for a running sync."""
    Symbol.objects.create(ticker="KO", market=Market.objects.get(code="NYSE"))
    services.symbols_ensure(pairs=[("KO", "NYSE")])
    assert not locks.is_held(locks.SYMBOL_SYNC)
    services.symbols_ensure(pairs=[("IBM", "NYSE")])
    assert locks.is_held(locks.SYMBOL_SYNC)  # taken to create IBM (held to the end of the test's transaction)
