"""Asset enrichment end to end against the local provider server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from enrichment.assets.services.dead_letters import enrichment_dead_letters_resubmit
from enrichment.assets.services.discovery import symbols_discover
from enrichment.assets.services.enrich import assets_enrich, enrich_step
from enrichment.assets.services.enrich_options import EnrichOptions
from enrichment.models import AssetEnrichmentResult, AssetEnrichmentRun, CircuitState
from enrichment.providers.tests import payloads
from etl.errors import DomainError
from etl.models import AssetClass, DataProvider, DeadLetter, Market, Symbol, SymbolMapping

pytestmark = pytest.mark.django_db


def make_symbol(ticker: str, market: str, asset_class: str, **fields) -> Symbol:
    return Symbol.objects.create(
        ticker=ticker,
        market=Market.objects.get(code=market),
        asset_class=AssetClass.objects.get(code=asset_class),
        **fields,
    )


@pytest.fixture
def aapl(providers):
    return make_symbol("AAPL", "NASDAQ", "STOCK_NASDAQ")


@pytest.fixture
def btc(providers):
    return make_symbol("BTCUSDT", "BINANCE", "CRYPTO", base_currency="BTC", quote_currency="USDT")


def serve_aapl(httpserver):
    httpserver.expect_request("/v8/finance/chart/AAPL").respond_with_json(
        payloads.yahoo_chart("AAPL", start=payloads.T0, bars=1, long_name="Apple Inc.")
    )
    httpserver.expect_request("/v3/reference/tickers/AAPL").respond_with_json(payloads.polygon_ticker())
    overview = payloads.av_overview("AAPL") | {
        "Name": "Apple Inc",
        "Sector": "TECHNOLOGY",
        "Industry": "ELECTRONIC COMPUTERS",
        "MarketCapitalization": "2800000000000",
        "OfficialSite": "https://www.apple.com",
    }
    httpserver.expect_request("/query").respond_with_json(overview)


FAST = {"backoff_base": 0.001, "backoff_max": 0.01, "sleep": lambda s: None}


def test_a_stock_is_enriched_from_every_source_in_priority_order(aapl, httpserver):
    serve_aapl(httpserver)
    result = assets_enrich(options=EnrichOptions(concurrency=1), client_options=FAST)
    assert (result.total, result.enriched, result.partial, result.failed) == (1, 1, 0, 0)
    assert result.sources == ("BINANCE", "YAHOO_FINANCE", "COINMARKETCAP", "ALPHA_VANTAGE", "POLYGON", "LOCAL")
    statuses = {k: v.status for k, v in result.outcomes[0].sources.items()}
    assert statuses == {
        "BINANCE": "n/a",  # no mapping for a stock
        "YAHOO_FINANCE": "ok",
        "COINMARKETCAP": "n/a",
        "ALPHA_VANTAGE": "ok",
        "POLYGON": "ok",
        "LOCAL": "ok",
    }
    aapl.refresh_from_db()
    assert aapl.name == "Apple Inc."  # Yahoo (priority 20) before Alpha Vantage (40) and Polygon (50)
    assert aapl.sector == "Technology" and aapl.industry == "Electronic Computers"
    assert aapl.country == "US" and aapl.quote_currency == "USD"
    assert aapl.market_cap == 2800000000000  # Alpha Vantage before Polygon
    assert aapl.website == "https://www.apple.com" and aapl.description
    assert aapl.category == "Equity" and aapl.enriched_at is not None
    row = AssetEnrichmentResult.objects.get(symbol=aapl)
    assert row.outcome == "enriched" and row.completeness == 1.0 and row.freshness == 1.0
    # Shared fields: name, industry, country, currency, market cap (within 10%), description, website, category.
    assert 0 < row.agreement < 1
    assert aapl.data_quality_score == round(100 * (0.5 + 0.2 + 0.3 * row.agreement)) == row.quality_score
    run = AssetEnrichmentRun.objects.get(pk=result.run_id)
    assert (run.status, run.enriched, run.symbols_total, run.progress_done) == ("succeeded", 1, 1, 1)


def test_existing_values_stay_unless_overwrite(aapl, httpserver):
    serve_aapl(httpserver)
    Symbol.objects.filter(pk=aapl.pk).update(name="Apple (manual)", sector="Tech")
    assets_enrich(options=EnrichOptions(concurrency=1, sources=("YAHOO_FINANCE",)), client_options=FAST)
    aapl.refresh_from_db()
    assert (aapl.name, aapl.sector) == ("Apple (manual)", "Tech")
    result = assets_enrich(
        options=EnrichOptions(concurrency=1, sources=("YAHOO_FINANCE",), overwrite=True, selection="all"),
        client_options=FAST,
    )
    aapl.refresh_from_db()
    assert aapl.name == "Apple Inc." and aapl.sector == "Tech"  # Yahoo has no sector
    assert result.outcomes[0].fields_updated == ("name",)


def test_selection_never_stale_and_all(providers, httpserver):
    old = make_symbol("OLD", "NYSE", "STOCK_NYSE", enriched_at=timezone.now() - timedelta(days=40))
    fresh = make_symbol("NEW", "NYSE", "STOCK_NYSE", enriched_at=timezone.now() - timedelta(days=1))
    never = make_symbol("NONE", "NYSE", "STOCK_NYSE")
    options = {"sources": ["LOCAL"], "concurrency": 1}
    picked = lambda **o: {  # noqa: E731
        r.symbol_id
        for r in AssetEnrichmentResult.objects.filter(
            run_id=assets_enrich(options=EnrichOptions.from_dict(options | o)).run_id
        )
    }
    assert picked(selection="never") == {never.pk}
    assert picked(selection="stale", stale_days=30) == {old.pk, never.pk}
    assert picked(selection="all") == {old.pk, fresh.pk, never.pk}
    assert picked(symbols=["new@NYSE"]) == {fresh.pk}


def test_local_only_is_partial_and_fills_reference_fields(providers):
    thyao = make_symbol("THYAO", "BIST", "STOCK_BIST")
    result = assets_enrich(options=EnrichOptions.from_dict({"sources": ["LOCAL"], "concurrency": 1}))
    thyao.refresh_from_db()
    assert (thyao.country, thyao.quote_currency, thyao.category) == ("TR", "TRY", "Stock (Borsa Istanbul)")
    assert result.partial == 1 and thyao.enriched_at is None  # no remote source: not "enriched"
    assert not DeadLetter.objects.exists()


def test_local_catalogue_file_is_read(providers, settings, tmp_path):
    catalogue = tmp_path / "catalogue.csv"
    catalogue.write_text("ticker,market,name,sector\nTHYAO,BIST,Turk Hava Yollari,Industrials\n", encoding="utf-8")
    settings.ENRICHMENT_CATALOGUE = str(catalogue)
    thyao = make_symbol("THYAO", "BIST", "STOCK_BIST")
    assets_enrich(options=EnrichOptions.from_dict({"sources": ["LOCAL"], "concurrency": 1}))
    thyao.refresh_from_db()
    assert (thyao.name, thyao.sector) == ("Turk Hava Yollari", "Industrials")


def test_a_crypto_pair_uses_its_mappings(btc, httpserver):
    httpserver.expect_request("/fapi/v1/exchangeInfo").respond_with_json(
        payloads.binance_exchange_info([("BTCUSDT", "BTC", "USDT")])
    )
    httpserver.expect_request("/v8/finance/chart/BTC-USD").respond_with_json(
        payloads.yahoo_chart(
            "BTC-USD", start=payloads.T0, bars=1, long_name="Bitcoin USD", instrument="CRYPTOCURRENCY", tz="UTC"
        )
    )
    httpserver.expect_request("/v1/cryptocurrency/info", query_string="symbol=BTC").respond_with_json(
        payloads.cmc_info()
    )
    httpserver.expect_request("/v2/aggs/ticker/X:BTCUSD/range/1/day/0/0").respond_with_json({})
    DataProvider.objects.filter(code__in=["ALPHA_VANTAGE", "POLYGON"]).update(is_enabled=False)
    result = assets_enrich(options=EnrichOptions(concurrency=1), client_options=FAST)
    assert result.enriched == 1
    btc.refresh_from_db()
    assert btc.name == "Bitcoin USD" and btc.website == "https://bitcoin.org/"
    assert btc.category == "PoW"  # Binance (priority 10) first
    sources = AssetEnrichmentResult.objects.get(symbol=btc).sources
    assert {k: v["provider_symbol"] for k, v in sources.items()} == {
        "BINANCE": "BTCUSDT",
        "YAHOO_FINANCE": "BTC-USD",
        "COINMARKETCAP": "BTC",
        "LOCAL": "",
    }


def test_all_sources_failing_dead_letters_once_and_resubmit_after_recovery_enriches(aapl, httpserver):
    httpserver.expect_request("/v8/finance/chart/AAPL").respond_with_data("down", status=500)
    httpserver.expect_request("/v3/reference/tickers/AAPL").respond_with_data("down", status=503)
    httpserver.expect_request("/query").respond_with_json(payloads.AV_NOTE)
    options = EnrichOptions(concurrency=1, max_retries=2)
    first = assets_enrich(options=options, client_options=FAST)
    assert (first.partial, first.dead_lettered) == (1, 1)  # local reference data only
    letter = DeadLetter.objects.get(kind="enrichment")
    assert letter.ref == "AAPL@NASDAQ" and letter.payload["symbol_id"] == aapl.pk
    assert "YAHOO_FINANCE" in letter.error and "POLYGON" in letter.error and "ALPHA_VANTAGE" in letter.error
    again = assets_enrich(options=options, client_options=FAST)
    assert again.dead_lettered == 0
    letter.refresh_from_db()
    assert DeadLetter.objects.filter(kind="enrichment").count() == 1 and letter.attempts == 2
    # Every attempt is in the fetch log: 2 runs x (2 Yahoo + 2 Polygon + 2 Alpha Vantage).
    from enrichment.models import FetchLog

    assert FetchLog.objects.count() == 12
    # The providers recover; resubmitting enriches the symbol and resolves the letter.
    httpserver.clear()
    serve_aapl(httpserver)
    CircuitState.objects.update(state="closed", consecutive_failures=0)
    resubmit = enrichment_dead_letters_resubmit(client_options=FAST)
    assert (resubmit.resubmitted, resubmit.resolved, resubmit.still_failing) == (1, 1, 0)
    letter.refresh_from_db()
    assert letter.resolved_at is not None and letter.resubmitted_at is not None
    aapl.refresh_from_db()
    assert aapl.name == "Apple Inc." and aapl.enriched_at is not None
    assert AssetEnrichmentResult.objects.get(run_id=resubmit.run_ids[0]).outcome == "enriched"
    with pytest.raises(DomainError):
        enrichment_dead_letters_resubmit(client_options=FAST)


def test_offline_the_step_succeeds_and_providers_fail_fast(providers, settings):
    settings.PROVIDER_API_KEYS = {}
    DataProvider.objects.update(base_url="http://127.0.0.1:9")  # nothing listens: like no network
    DataProvider.objects.filter(requires_api_key=True).update(is_enabled=True)  # enabled, but no key
    for i in range(6):
        make_symbol(f"COIN{i}USDT", "BINANCE", "CRYPTO")
    out = enrich_step(options={"enrich_concurrency": 1})
    assert out["total"] == 6 and out["partial"] == 6 and out["failed"] == 0
    assert out["sources"] == ["BINANCE", "YAHOO_FINANCE", "LOCAL"]  # keyless providers are left out
    assert set(CircuitState.objects.values_list("provider", "state")) == {
        ("BINANCE", "open"),
        ("YAHOO_FINANCE", "open"),
    }
    later = AssetEnrichmentResult.objects.order_by("symbol_id").last().sources
    assert later["BINANCE"]["status"] == "unavailable" and later["LOCAL"]["status"] == "ok"


def test_options_are_checked_with_clear_messages(providers):
    with pytest.raises(DomainError, match="selection must be one of"):
        EnrichOptions.from_dict({"selection": "some"})
    with pytest.raises(DomainError, match="unknown source"):
        EnrichOptions.from_dict({"sources": ["NOPE"]})
    with pytest.raises(DomainError, match="Unknown option"):
        EnrichOptions.from_dict({"colour": 1})
    with pytest.raises(DomainError, match="Bad option value"):
        EnrichOptions.from_dict({"batch_size": "many"})
    with pytest.raises(DomainError, match="Unknown symbol"):
        assets_enrich(options=EnrichOptions(symbols=("ZZZ",)))


@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_give_the_same_result(providers, httpserver):
    serve_aapl(httpserver)
    symbols = [make_symbol(t, "NASDAQ", "STOCK_NASDAQ") for t in ("AAPL", "MSFT", "NVDA", "AMZN")]
    httpserver.expect_request("/v8/finance/chart/MSFT").respond_with_json(
        payloads.yahoo_chart("MSFT", start=payloads.T0, bars=1, long_name="Microsoft")
    )
    result = assets_enrich(
        options=EnrichOptions(concurrency=3, batch_size=2, sources=("YAHOO_FINANCE",)), client_options=FAST
    )
    assert result.total == 4 and result.enriched == 2 and result.failed == 2  # NVDA/AMZN: not served -> 500
    names = dict(Symbol.objects.filter(pk__in=[s.pk for s in symbols]).values_list("ticker", "name"))
    assert names["AAPL"] == "Apple Inc." and names["MSFT"] == "Microsoft"


def test_discovery_creates_listed_symbols_once(providers, httpserver, client_options):
    httpserver.expect_request("/fapi/v1/exchangeInfo").respond_with_json(
        payloads.binance_exchange_info(
            [("BTCUSDT", "BTC", "USDT"), ("ETHUSDT", "ETH", "USDT"), ("ETHBTC", "ETH", "BTC")]
        )
    )
    make_symbol("BTCUSDT", "BINANCE", "CRYPTO")
    first = symbols_discover(client_options=client_options)
    assert (first.listed, first.created, first.existing) == (2, 1, 1)
    eth = Symbol.objects.get(ticker="ETHUSDT")
    assert (eth.base_currency, eth.quote_currency, eth.source, eth.asset_class.code) == (
        "ETH",
        "USDT",
        "discovered",
        "CRYPTO",
    )
    assert SymbolMapping.objects.get(symbol=eth, provider__code="BINANCE").provider_symbol == "ETHUSDT"
    second = symbols_discover(client_options=client_options)
    assert (second.created, second.mappings_created) == (0, 0)


def test_the_old_systems_option_names_are_accepted(providers):
    opts = EnrichOptions.from_dict(
        {
            "enabledSources": ["YAHOO_FINANCE", "COINMARKETCAP"],
            "maxConcurrency": 3,
            "batchSize": 50,
            "overwriteExistingData": False,
            "rateLimitDelay": "00:00:00.500",
            "maxRetries": 3,
            "requestTimeout": "00:00:30",
        }
    )
    assert (opts.sources, opts.rate_limit_delay, opts.timeout, opts.batch_size) == (
        ("YAHOO_FINANCE", "COINMARKETCAP"),
        0.5,
        30.0,
        50,
    )
    with pytest.raises(DomainError, match="requestTimeout"):
        EnrichOptions.from_dict({"requestTimeout": "soon:ish"})


def test_resubmit_keeps_each_letters_options(providers, httpserver):
    from io import StringIO

    from django.core.management import call_command

    a = make_symbol("AAA", "NYSE", "STOCK_NYSE")
    b = make_symbol("BBB", "NYSE", "STOCK_NYSE")
    for symbol, sources in ((a, ["LOCAL"]), (b, ["LOCAL", "YAHOO_FINANCE"])):
        DeadLetter.objects.create(
            kind="enrichment",
            ref=f"{symbol.ticker}@NYSE",
            error="e",
            payload={"symbol_id": symbol.pk, "options": {"sources": sources, "concurrency": 1, "max_retries": 1}},
        )
    httpserver.expect_request("/v8/finance/chart/BBB").respond_with_json(
        payloads.yahoo_chart("BBB", start=payloads.T0, bars=1, long_name="Bee Corp")
    )
    out = StringIO()
    call_command("enrich_assets", "--resubmit-dead-letters", stdout=out)
    assert "resubmitted 2: 1 resolved, 1 still failing" in out.getvalue()
    runs = list(AssetEnrichmentRun.objects.order_by("id"))
    assert sorted(sorted(r.options["sources"]) for r in runs) == [["LOCAL"], ["LOCAL", "YAHOO_FINANCE"]]
    b.refresh_from_db()
    assert b.name == "Bee Corp"
    # AAA had only local data to offer: its letter stays open for a later resubmit.
    assert DeadLetter.objects.get(ref="AAA@NYSE").resolved_at is None


def test_a_cancelled_run_stops_between_batches(providers):
    for i in range(3):
        make_symbol(f"S{i}", "NYSE", "STOCK_NYSE")
    options = EnrichOptions(sources=("LOCAL",), concurrency=1, batch_size=1)
    run = AssetEnrichmentRun.objects.create(options=options.to_dict(), cancel_requested=True)
    result = assets_enrich(options=options, run=run)
    assert result.cancelled and result.total == 3 and len(result.outcomes) == 1
    run.refresh_from_db()
    assert run.status == "cancelled" and run.progress_done == 1
