"""Symbol mapping defaults, operator edits and validation against a provider."""

from __future__ import annotations

import pytest

from enrichment.assets.services.mapping import mapping_infer, mapping_validate, mappings_ensure, provider_symbol_for
from enrichment.providers.tests import payloads
from etl.errors import DomainError
from etl.models import AssetClass, DataProvider, Market, Symbol, SymbolMapping

pytestmark = pytest.mark.django_db


def sym(ticker: str, market: str, asset_class: str | None = None, **fields) -> Symbol:
    return Symbol.objects.create(
        ticker=ticker,
        market=Market.objects.get(code=market),
        asset_class=AssetClass.objects.get(code=asset_class) if asset_class else None,
        **fields,
    )


CODES = ("BINANCE", "YAHOO_FINANCE", "POLYGON", "COINMARKETCAP", "ALPHA_VANTAGE")


@pytest.mark.parametrize(
    ("ticker", "market", "asset_class", "fields", "expected"),
    [
        ("BTC/USDT", "BINANCE", "CRYPTO", {}, ("BTCUSDT", "BTC-USD", "X:BTCUSD", "BTC", None)),
        ("BTCUSDT", "BINANCE", "CRYPTO", {}, ("BTCUSDT", "BTC-USD", "X:BTCUSD", "BTC", None)),
        (
            "ETH",
            "BINANCE",
            "CRYPTO",
            {"base_currency": "ETH", "quote_currency": "USDT"},
            ("ETHUSDT", "ETH-USD", "X:ETHUSD", "ETH", None),
        ),
        ("ETHBTC", "BINANCE", None, {}, ("ETHBTC", "ETH-BTC", "X:ETHBTC", "ETH", None)),
        ("THYAO", "BIST", "STOCK_BIST", {}, (None, "THYAO.IS", None, None, None)),
        ("AAPL", "NASDAQ", "STOCK_NASDAQ", {}, (None, "AAPL", "AAPL", None, "AAPL")),
        ("BRK.B", "NYSE", "STOCK_NYSE", {}, (None, "BRK-B", "BRK.B", None, "BRK.B")),
        ("EURUSD", "FOREX_MARKET", "FOREX", {}, (None, "EURUSD=X", "C:EURUSD", None, None)),
    ],
)
def test_defaults_are_inferred_per_provider(providers, ticker, market, asset_class, fields, expected):
    symbol = sym(ticker, market, asset_class, **fields)
    assert tuple(mapping_infer(symbol=symbol, provider_code=c) for c in CODES) == expected


def test_ensure_stores_defaults_once_and_keeps_manual_edits(providers):
    btc = sym("BTCUSDT", "BINANCE", "CRYPTO")
    thyao = sym("THYAO", "BIST", "STOCK_BIST")
    SymbolMapping.objects.create(
        symbol=btc,
        provider=DataProvider.objects.get(code="YAHOO_FINANCE"),
        provider_symbol="BTC-USDT",
        origin="manual",
    )
    first = mappings_ensure()
    assert first.created == 4  # btc: Binance, Polygon, CMC (Yahoo is manual); thyao: Yahoo
    assert mappings_ensure().created == 0
    assert provider_symbol_for(symbol=btc, provider_code="YAHOO_FINANCE") == "BTC-USDT"
    assert SymbolMapping.objects.get(symbol=thyao).provider_symbol == "THYAO.IS"


def test_validation_against_the_provider_records_the_answer(providers, httpserver, client_options):
    httpserver.expect_request("/v8/finance/chart/THYAO.IS").respond_with_json(
        payloads.yahoo_chart("THYAO.IS", start=payloads.T0, bars=1, currency="TRY", tz="Europe/Istanbul")
    )
    httpserver.expect_request("/v8/finance/chart/NOPE.IS").respond_with_json(payloads.yahoo_not_found(), status=404)
    thyao = sym("THYAO", "BIST", "STOCK_BIST")
    nope = sym("NOPE", "BIST", "STOCK_BIST")
    mappings_ensure()
    good = SymbolMapping.objects.get(symbol=thyao)
    bad = SymbolMapping.objects.get(symbol=nope)
    assert mapping_validate(mapping=good, client_options=client_options) is True
    assert mapping_validate(mapping=bad, client_options=client_options) is False
    good.refresh_from_db()
    bad.refresh_from_db()
    assert (good.is_valid, bad.is_valid) == (True, False) and good.validated_at is not None


def test_validation_when_the_provider_is_down_says_so(providers, httpserver, client_options):
    httpserver.expect_request("/v8/finance/chart/THYAO.IS").respond_with_data("x", status=500)
    sym("THYAO", "BIST", "STOCK_BIST")
    mappings_ensure()
    mapping = SymbolMapping.objects.get()
    with pytest.raises(DomainError, match="Could not check THYAO.IS on YAHOO_FINANCE"):
        mapping_validate(mapping=mapping, client_options=client_options)
    mapping.refresh_from_db()
    assert mapping.is_valid is None
