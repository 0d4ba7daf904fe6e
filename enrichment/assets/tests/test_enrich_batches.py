"""Batched provider calls and the offline catalogue: per-symbol outcomes stay exact when a
batch partly fails, and the catalogue never replaces what a live provider said."""

from __future__ import annotations

import json

import pytest
from werkzeug import Response

from enrichment.assets.services.enrich import assets_enrich
from enrichment.assets.services.enrich_options import EnrichOptions
from enrichment.assets.services.index_catalogue import catalogue_version, country_code
from enrichment.models import AssetEnrichmentResult, FetchLog
from enrichment.providers.clients import get_client
from enrichment.providers.tests import payloads
from etl.models import AssetClass, DataProvider, DeadLetter, Market, Symbol

pytestmark = pytest.mark.django_db

FAST = {"backoff_base": 0.001, "backoff_max": 0.01, "sleep": lambda s: None}


def make_symbol(ticker: str, market: str, asset_class: str, **fields) -> Symbol:
    return Symbol.objects.create(
        ticker=ticker,
        market=Market.objects.get(code=market),
        asset_class=AssetClass.objects.get(code=asset_class),
        **fields,
    )


def test_a_batch_the_provider_answers_in_part_records_each_symbols_outcome(providers, httpserver):
    for ticker in ("AAPL", "MSFT", "ZZZQ"):
        make_symbol(ticker, "NASDAQ", "STOCK_NASDAQ")
    payloads.serve_yahoo_quote(
        httpserver,
        "AAPL,MSFT,ZZZQ",
        [
            payloads.yahoo_quote_row("AAPL", long_name="Apple Inc."),
            payloads.yahoo_quote_row("MSFT", long_name="Microsoft Corporation"),
        ],
    )
    result = assets_enrich(
        options=EnrichOptions(concurrency=1, sources=("YAHOO_FINANCE",), dead_letter=True), client_options=FAST
    )
    outcomes = {o.ref: (o.outcome, o.sources["YAHOO_FINANCE"].status) for o in result.outcomes}
    assert outcomes == {
        "AAPL@NASDAQ": ("enriched", "ok"),
        "MSFT@NASDAQ": ("enriched", "ok"),
        "ZZZQ@NASDAQ": ("failed", "empty"),  # left out of the answer: Yahoo does not know it
    }
    names = dict(Symbol.objects.values_list("ticker", "name"))
    assert names == {"AAPL": "Apple Inc.", "MSFT": "Microsoft Corporation", "ZZZQ": ""}
    # One quote call for the three (plus the cookie and the crumb), each in the fetch log.
    assert list(FetchLog.objects.order_by("id").values_list("endpoint", "symbol")) == [
        ("cookie", ""),
        ("crumb", ""),
        ("quote", "AAPL..ZZZQ (3)"),
    ]
    assert not DeadLetter.objects.exists()  # "unknown" is an answer, not a failure


def test_a_failed_call_marks_every_symbol_it_carried_and_the_next_call_still_runs(providers, httpserver):
    tickers = ["AAPL", "MSFT", "NVDA"]
    for ticker in tickers:
        make_symbol(ticker, "NASDAQ", "STOCK_NASDAQ")
    payloads.serve_yahoo_handshake(httpserver)
    crumb = payloads.YAHOO_CRUMB
    httpserver.expect_request(
        "/v7/finance/quote", query_string={"symbols": "AAPL,MSFT", "crumb": crumb}
    ).respond_with_data("down", status=503)
    httpserver.expect_request("/v7/finance/quote", query_string={"symbols": "NVDA", "crumb": crumb}).respond_with_json(
        payloads.yahoo_quote([payloads.yahoo_quote_row("NVDA", long_name="NVIDIA Corporation")])
    )
    client = get_client("YAHOO_FINANCE", max_attempts=2, **FAST)
    client.info_batch_size = 2  # two calls: AAPL,MSFT then NVDA
    answer = client.fetch_assets_info(provider_symbols=tickers)
    assert set(answer.infos) == {"NVDA"} and answer.infos["NVDA"].name == "NVIDIA Corporation"
    assert {s: e.reason for s, e in answer.errors.items()} == {"AAPL": "server_error", "MSFT": "server_error"}


def test_an_expired_crumb_is_fetched_again_once(providers, httpserver):
    payloads.serve_yahoo_handshake(httpserver)
    calls = []

    def quote(request):
        calls.append(request.args["crumb"])
        if len(calls) == 1:
            return Response(json.dumps(payloads.YAHOO_INVALID_CRUMB), status=401, content_type="application/json")
        row = payloads.yahoo_quote_row("KO", long_name="The Coca-Cola Company")
        return Response(json.dumps(payloads.yahoo_quote([row])), content_type="application/json")

    httpserver.expect_request("/v7/finance/quote").respond_with_handler(quote)
    answer = get_client("YAHOO_FINANCE", **FAST).fetch_assets_info(provider_symbols=["KO"])
    assert answer.infos["KO"].name == "The Coca-Cola Company" and answer.infos["KO"].country == "US"
    assert len(calls) == 2
    assert FetchLog.objects.filter(endpoint="crumb").count() == 2


def test_coinmarketcap_asks_for_a_list_and_drops_the_symbols_it_refuses(providers, httpserver):
    info = {
        "status": {"error_code": 0},
        "data": {**payloads.cmc_info("BTC")["data"], **payloads.cmc_info("ETH", "Ethereum")["data"]},
    }
    refused = payloads.cmc_error(400, 'Invalid value for "symbol": "NOPECOIN"')
    httpserver.expect_request(
        "/v1/cryptocurrency/info", query_string={"symbol": "BTC,NOPECOIN,ETH", "skip_invalid": "true"}
    ).respond_with_json(refused, status=400)
    httpserver.expect_request(
        "/v1/cryptocurrency/info", query_string={"symbol": "BTC,ETH", "skip_invalid": "true"}
    ).respond_with_json(info)
    answer = get_client("COINMARKETCAP", **FAST).fetch_assets_info(provider_symbols=["BTC", "NOPECOIN", "ETH"])
    assert {s: i.name for s, i in answer.infos.items()} == {"BTC": "Bitcoin", "ETH": "Ethereum"}
    assert {s: e.reason for s, e in answer.errors.items()} == {"NOPECOIN": "not_found"}


def test_binance_reads_exchange_info_once_for_the_whole_run(providers, httpserver):
    coins = [("BTCUSDT", "BTC", "USDT"), ("ETHUSDT", "ETH", "USDT")]
    httpserver.expect_request("/fapi/v1/exchangeInfo").respond_with_json(payloads.binance_exchange_info(coins))
    for _, base, quote in coins:
        make_symbol(f"{base}{quote}", "BINANCE", "CRYPTO", base_currency=base, quote_currency=quote)
    result = assets_enrich(
        options=EnrichOptions(concurrency=1, batch_size=1, sources=("BINANCE",)), client_options=FAST
    )
    assert result.enriched == 2
    assert FetchLog.objects.filter(endpoint="exchangeInfo").count() == 1  # two batches, one call


def test_offline_the_catalogue_names_us_symbols_and_spares_them_the_dead_letter(providers, settings):
    settings.PROVIDER_API_KEYS = {}
    DataProvider.objects.update(base_url="http://127.0.0.1:9")  # nothing listens: like no network
    aapl = make_symbol("AAPL", "NASDAQ", "STOCK_NASDAQ")
    calm = make_symbol("CALM", "NASDAQ", "STOCK_NASDAQ")
    thyao = make_symbol("THYAO", "BIST", "STOCK_BIST")
    result = assets_enrich(options=EnrichOptions(concurrency=1), client_options=FAST)
    by_ref = {o.ref: o for o in result.outcomes}
    assert by_ref["AAPL@NASDAQ"].outcome == "partial" and not by_ref["AAPL@NASDAQ"].dead_lettered
    assert by_ref["THYAO@BIST"].dead_lettered  # not in any index the catalogue has
    aapl.refresh_from_db()
    calm.refresh_from_db()
    thyao.refresh_from_db()
    assert (aapl.name, aapl.sector, aapl.country) == ("Apple Inc.", "Technology", "US")
    assert aapl.website == "https://apple.com" and aapl.enriched_at is None  # no live provider answered
    assert (calm.name, calm.sector, calm.country) == ("Cal-Maine", "Consumer Defensive", "US")
    assert thyao.name == ""
    row = AssetEnrichmentResult.objects.get(symbol=aapl)
    assert row.sources["CATALOGUE"] == {
        "status": "ok",
        "provider_symbol": "AAPL",
        "error": "",
        "data_version": catalogue_version(),
    }
    assert catalogue_version() == "pytickersymbols 1.17.10"


def test_the_catalogue_never_overwrites_a_live_providers_newer_value(providers, httpserver, settings):
    aapl = make_symbol("AAPL", "NASDAQ", "STOCK_NASDAQ")
    DataProvider.objects.exclude(code="YAHOO_FINANCE").update(is_enabled=False)
    payloads.serve_yahoo_quote(
        httpserver, "AAPL", [payloads.yahoo_quote_row("AAPL", long_name="Apple Inc. (renamed last week)")]
    )
    assets_enrich(options=EnrichOptions(concurrency=1), client_options=FAST)
    aapl.refresh_from_db()
    assert aapl.name == "Apple Inc. (renamed last week)"  # live first, the catalogue below it
    assert aapl.sector == "Technology"  # a field no live source gave: the catalogue fills it
    # A refresh that overwrites, with Yahoo unreachable: only the catalogue answers.
    httpserver.clear()
    DataProvider.objects.update(base_url="http://127.0.0.1:9")
    options = EnrichOptions(concurrency=1, selection="all", overwrite=True, max_retries=1)
    result = assets_enrich(options=options, client_options=FAST)
    assert result.outcomes[0].sources["CATALOGUE"].values["name"] == "Apple Inc."
    aapl.refresh_from_db()
    assert aapl.name == "Apple Inc. (renamed last week)"
    assert "name" not in result.outcomes[0].fields_updated


@pytest.mark.parametrize(
    ("place", "code"),
    [
        ("United States", "US"),
        ("Jackson, Mississippi", "US"),
        ("Germany", "DE"),
        ("London, United Kingdom", "GB"),
        ("none", ""),
    ],
)
def test_catalogue_countries_become_iso_codes(place, code):
    assert country_code(place) == code
