"""Every client against a local server answering like the real APIs, failures included."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta

import pytest
import requests
from werkzeug import Response

from enrichment.conftest import API_KEYS
from enrichment.models import CircuitState, FetchLog
from enrichment.providers.base import ProviderCandle, parse_retry_after
from enrichment.providers.clients import get_client
from enrichment.providers.errors import ProviderError
from enrichment.providers.tests import payloads

pytestmark = pytest.mark.django_db

NVDA = "/v8/finance/chart/NVDA"


def attempts(provider: str) -> list[tuple[int, str, int | None]]:
    return list(
        FetchLog.objects.filter(provider=provider).order_by("id").values_list("attempt", "outcome", "status_code")
    )


# -- Yahoo ------------------------------------------------------------------------------
def test_yahoo_candles_parse_the_chart_and_skip_null_bars(providers, httpserver, client_options):
    httpserver.expect_request(NVDA).respond_with_json(
        payloads.yahoo_chart("NVDA", start=payloads.T0, bars=5, null_at=(2,))
    )
    candles = get_client("YAHOO_FINANCE", **client_options).fetch_candles(
        provider_symbol="NVDA", timeframe="1d", start=payloads.T0, end=payloads.T0 + timedelta(days=10)
    )
    assert [c.ts for c in candles] == [payloads.T0 + timedelta(days=i) for i in (0, 1, 3, 4)]
    assert candles[0] == ProviderCandle(
        ts=payloads.T0, open=99.75, high=101.25, low=98.75, close=100.25, volume=1_000_000.0
    )
    request, _ = httpserver.log[0]
    assert request.args["interval"] == "1d" and int(request.args["period1"]) == int(payloads.T0.timestamp())
    assert attempts("YAHOO_FINANCE") == [(1, "ok", 200)]


def test_yahoo_4h_bars_are_built_from_1h_bars(providers, httpserver, client_options):
    httpserver.expect_request(NVDA).respond_with_json(
        payloads.yahoo_chart("NVDA", start=payloads.T0, bars=8, step=timedelta(hours=1))
    )
    candles = get_client("YAHOO_FINANCE", **client_options).fetch_candles(
        provider_symbol="NVDA", timeframe="4h", start=payloads.T0, end=payloads.T0 + timedelta(hours=7)
    )
    assert [c.ts for c in candles] == [payloads.T0, payloads.T0 + timedelta(hours=4)]
    assert candles[0].open == 99.75 and candles[0].close == 103.25 and candles[0].high == 104.25
    assert candles[0].volume == sum(1_000_000 + 1000 * i for i in range(4))
    assert httpserver.log[0][0].args["interval"] == "60m"


def test_yahoo_meta_gives_name_currency_country_and_type(providers, httpserver, client_options):
    httpserver.expect_request("/v8/finance/chart/THYAO.IS").respond_with_json(
        payloads.yahoo_chart(
            "THYAO.IS",
            start=payloads.T0,
            bars=1,
            long_name="Turk Hava Yollari A.O.",
            currency="TRY",
            tz="Europe/Istanbul",
        )
    )
    info = get_client("YAHOO_FINANCE", **client_options).fetch_asset_info(provider_symbol="THYAO.IS")
    assert info.known() == {
        "name": "Turk Hava Yollari A.O.",
        "currency": "TRY",
        "country": "TR",
        "category": "Equity",
    }


def test_yahoo_chart_error_is_a_permanent_not_found(providers, httpserver, client_options):
    httpserver.expect_request("/v8/finance/chart/NOPE").respond_with_json(payloads.yahoo_not_found(), status=404)
    client = get_client("YAHOO_FINANCE", **client_options)
    with pytest.raises(ProviderError) as err:
        client.fetch_asset_info(provider_symbol="NOPE")
    assert err.value.permanent and err.value.reason == "not_found"
    assert attempts("YAHOO_FINANCE") == [(1, "not_found", 404)]
    assert not client.validate_symbol(provider_symbol="NOPE")
    # An unknown symbol says nothing about Yahoo's health.
    assert CircuitState.objects.get(provider="YAHOO_FINANCE").consecutive_failures == 0


def test_429_with_retry_after_is_waited_out_then_succeeds(providers, httpserver):
    httpserver.expect_oneshot_request(NVDA).respond_with_json({}, status=429, headers={"Retry-After": "1"})
    httpserver.expect_request(NVDA).respond_with_json(payloads.yahoo_chart("NVDA", start=payloads.T0, bars=2))
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    client = get_client("YAHOO_FINANCE", backoff_base=0.001, backoff_max=0.01, sleep=sleep)
    candles = client.fetch_candles(
        provider_symbol="NVDA", timeframe="1d", start=payloads.T0, end=payloads.T0 + timedelta(days=1)
    )
    assert len(candles) == 2
    assert waits and waits[0] >= 1.0  # Retry-After honoured, not the millisecond backoff
    assert attempts("YAHOO_FINANCE") == [(1, "throttled", 429), (2, "ok", 200)]


def test_500s_are_retried_until_the_attempts_run_out(providers, httpserver, client_options, fake_sleep):
    httpserver.expect_request(NVDA).respond_with_data("oops", status=500)
    with pytest.raises(ProviderError) as err:
        get_client("YAHOO_FINANCE", **client_options).fetch_asset_info(provider_symbol="NVDA")
    assert not err.value.permanent and err.value.reason == "server_error"
    assert attempts("YAHOO_FINANCE") == [(1, "server_error", 500), (2, "server_error", 500), (3, "server_error", 500)]
    assert len(fake_sleep.calls) == 2 and all(0 <= s <= 0.01 for s in fake_sleep.calls)
    assert CircuitState.objects.get(provider="YAHOO_FINANCE").consecutive_failures == 1


def test_a_500_then_a_good_answer_succeeds(providers, httpserver, client_options):
    httpserver.expect_oneshot_request(NVDA).respond_with_data("bad gateway", status=502)
    httpserver.expect_request(NVDA).respond_with_json(payloads.yahoo_chart("NVDA", start=payloads.T0, bars=1))
    info = get_client("YAHOO_FINANCE", **client_options).fetch_asset_info(provider_symbol="NVDA")
    assert info.name == "NVIDIA Corporation"
    assert attempts("YAHOO_FINANCE") == [(1, "server_error", 502), (2, "ok", 200)]


def test_a_slow_answer_past_the_timeout_is_retried_then_fails(providers, httpserver, client_options):
    def slow(request):
        time.sleep(0.4)
        return Response(
            json.dumps(payloads.yahoo_chart("NVDA", start=payloads.T0, bars=1)), content_type="application/json"
        )

    httpserver.expect_request(NVDA).respond_with_handler(slow)
    client = get_client("YAHOO_FINANCE", **{**client_options, "max_attempts": 2}, timeout=0.15)
    with pytest.raises(ProviderError) as err:
        client.fetch_asset_info(provider_symbol="NVDA")
    assert err.value.reason == "timeout" and not err.value.permanent
    assert attempts("YAHOO_FINANCE") == [(1, "timeout", None), (2, "timeout", None)]


def test_malformed_json_is_not_retried(providers, httpserver, client_options):
    httpserver.expect_request(NVDA).respond_with_data('{"chart": {"result": [', content_type="application/json")
    with pytest.raises(ProviderError) as err:
        get_client("YAHOO_FINANCE", **client_options).fetch_asset_info(provider_symbol="NVDA")
    assert err.value.reason == "malformed" and not err.value.permanent
    assert attempts("YAHOO_FINANCE") == [(1, "malformed", 200)]
    assert CircuitState.objects.get(provider="YAHOO_FINANCE").consecutive_failures == 1


def test_an_empty_object_from_yahoo_is_malformed(providers, httpserver, client_options):
    httpserver.expect_request(NVDA).respond_with_json({})
    with pytest.raises(ProviderError) as err:
        get_client("YAHOO_FINANCE", **client_options).fetch_asset_info(provider_symbol="NVDA")
    assert err.value.reason == "malformed"
    assert attempts("YAHOO_FINANCE") == [(1, "malformed", 200)]


def test_a_refused_connection_is_a_transient_failure(providers, client_options):
    providers["YAHOO_FINANCE"].base_url = "http://127.0.0.1:9"  # discard port: nothing listens
    providers["YAHOO_FINANCE"].save()
    with pytest.raises(ProviderError) as err:
        get_client("YAHOO_FINANCE", **client_options).fetch_asset_info(provider_symbol="NVDA")
    assert err.value.reason == "unreachable" and not err.value.permanent
    assert attempts("YAHOO_FINANCE") == [(1, "unreachable", None)]


def test_418_ban_longer_than_we_wait_blocks_every_worker(providers, httpserver, client_options):
    httpserver.expect_request("/fapi/v1/exchangeInfo").respond_with_json(
        {"code": -1003, "msg": "Way too many requests; IP banned."}, status=418, headers={"Retry-After": "3600"}
    )
    with pytest.raises(ProviderError) as err:
        get_client("BINANCE", **client_options).list_symbols()
    assert err.value.reason == "banned"
    assert attempts("BINANCE") == [(1, "banned", 418)]  # not retried: the ban outlasts our patience
    # A second worker does not even call: the shared block makes it give up at once.
    with pytest.raises(ProviderError) as err:
        get_client("BINANCE", **client_options, rate_max_wait=5).list_symbols()
    assert err.value.reason == "rate_limited"
    assert len(httpserver.log) == 1
    assert attempts("BINANCE") == [(1, "banned", 418), (1, "rate_limited", None)]
    # Only the ban counted against Binance's circuit; our own waiting did not.
    assert CircuitState.objects.get(provider="BINANCE").consecutive_failures == 1


def test_retry_after_accepts_http_dates():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 30) == pytest.approx(30)
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("soon") is None


# -- Binance ---------------------------------------------------------------------------------
def test_binance_klines_page_by_1500_and_weigh_each_call(providers, httpserver, client_options):
    hour = 3_600_000
    start_ms = int(payloads.T0.timestamp() * 1000)
    first = [payloads.binance_kline(start_ms + i * hour, i) for i in range(1500)]
    second = [payloads.binance_kline(start_ms + (1500 + i) * hour, 1500 + i) for i in range(10)]
    httpserver.expect_ordered_request("/fapi/v1/klines").respond_with_json(first)
    httpserver.expect_ordered_request("/fapi/v1/klines").respond_with_json(second)
    end = payloads.T0 + timedelta(hours=1509)
    candles = get_client("BINANCE", **client_options).fetch_candles(
        provider_symbol="BTCUSDT", timeframe="1h", start=payloads.T0, end=end
    )
    assert len(candles) == 1510 and candles[-1].ts == end
    assert candles[0] == ProviderCandle(
        ts=payloads.T0,
        open=100.0,
        high=102.0,
        low=99.0,
        close=101.0,
        volume=10.0,
        taker_buy_volume=5.0,
        quote_volume=1000.0,
        trades=100,
    )
    assert int(httpserver.log[0][0].args["startTime"]) == start_ms
    second_request = httpserver.log[1][0]
    # The second page starts at the next bar's open (not 1 ms after the last one's), so a page
    # that reaches `end` asks no further.
    assert int(second_request.args["startTime"]) == start_ms + 1500 * hour
    from enrichment.models import RateLimitGrant

    # limit=1500 weighs 10; the second page asks for the 10 bars left, weight 1.
    assert sorted(RateLimitGrant.objects.values_list("weight", flat=True)) == [1, 10]


def test_binance_funding_open_interest_and_taker_ratio(providers, httpserver, client_options):
    t = int(payloads.T0.timestamp() * 1000)
    httpserver.expect_request("/fapi/v1/fundingRate").respond_with_json(
        [
            {"symbol": "BTCUSDT", "fundingRate": "0.00010000", "fundingTime": t, "markPrice": "42000.1"},
            {"symbol": "BTCUSDT", "fundingRate": "-0.00002500", "fundingTime": t + 8 * 3_600_000, "markPrice": ""},
        ]
    )
    httpserver.expect_request("/futures/data/openInterestHist").respond_with_json(
        [
            {"symbol": "BTCUSDT", "sumOpenInterest": "81234.5", "sumOpenInterestValue": "3.4E9", "timestamp": str(t)},
            {
                "symbol": "BTCUSDT",
                "sumOpenInterest": "81300.0",
                "sumOpenInterestValue": "3.5E9",
                "timestamp": t + 3_600_000,
            },
        ]
    )
    httpserver.expect_request("/futures/data/takerlongshortRatio").respond_with_json(
        [{"buySellRatio": "1.2500", "buyVol": "500.0", "sellVol": "400.0", "timestamp": t}]
    )
    client = get_client("BINANCE", **client_options)
    end = payloads.T0 + timedelta(days=1)
    assert client.fetch_funding_rates(provider_symbol="BTCUSDT", start=payloads.T0, end=end) == [
        (payloads.T0, 0.0001),
        (payloads.T0 + timedelta(hours=8), -0.000025),
    ]
    assert client.fetch_open_interest(provider_symbol="BTCUSDT", period="1h", start=payloads.T0, end=end) == [
        (payloads.T0, 81234.5),
        (payloads.T0 + timedelta(hours=1), 81300.0),
    ]
    assert client.fetch_taker_ratio(provider_symbol="BTCUSDT", period="1h", start=payloads.T0, end=end) == [
        (payloads.T0, 1.25, 500.0, 400.0)
    ]
    assert httpserver.log[1][0].args["period"] == "1h"
    with pytest.raises(ProviderError):
        client.fetch_open_interest(provider_symbol="BTCUSDT", period="3m", start=payloads.T0, end=end)


def test_binance_exchange_info_lists_and_describes_symbols(providers, httpserver, client_options):
    httpserver.expect_request("/fapi/v1/exchangeInfo").respond_with_json(
        payloads.binance_exchange_info([("BTCUSDT", "BTC", "USDT"), ("ETHUSDT", "ETH", "USDT")])
    )
    client = get_client("BINANCE", **client_options)
    assert [s["symbol"] for s in client.list_symbols()] == ["BTCUSDT", "ETHUSDT"]
    assert client.fetch_asset_info(provider_symbol="ETHUSDT").known() == {"currency": "USDT", "category": "Layer-1"}
    assert client.validate_symbol(provider_symbol="BTCUSDT") and not client.validate_symbol(provider_symbol="XYZUSDT")
    assert len(httpserver.log) == 1  # exchangeInfo is read once per client


def test_binance_invalid_symbol_is_not_found(providers, httpserver, client_options):
    httpserver.expect_request("/fapi/v1/klines").respond_with_json(
        {"code": -1121, "msg": "Invalid symbol."}, status=400
    )
    with pytest.raises(ProviderError) as err:
        get_client("BINANCE", **client_options).fetch_candles(
            provider_symbol="NOPE", timeframe="1d", start=payloads.T0, end=payloads.T0
        )
    assert err.value.permanent and err.value.reason == "not_found"


# -- Polygon ---------------------------------------------------------------------------------
def test_polygon_follows_next_url_with_the_key_and_never_logs_it(providers, httpserver, client_options, caplog):
    caplog.set_level(logging.DEBUG)
    start_ms, end_ms = int(payloads.T0.timestamp() * 1000), int((payloads.T0 + timedelta(days=4)).timestamp() * 1000)
    path = f"/v2/aggs/ticker/X:BTCUSD/range/1/day/{start_ms}/{end_ms}"
    next_url = httpserver.url_for("/v2/aggs/ticker/X:BTCUSD/range/1/day/page2?cursor=abc")
    httpserver.expect_request(path).respond_with_json(payloads.polygon_aggs(payloads.T0, 3, next_url=next_url))
    httpserver.expect_request("/v2/aggs/ticker/X:BTCUSD/range/1/day/page2").respond_with_json(
        payloads.polygon_aggs(payloads.T0, 2, offset=3)
    )
    candles = get_client("POLYGON", **client_options).fetch_candles(
        provider_symbol="X:BTCUSD", timeframe="1d", start=payloads.T0, end=payloads.T0 + timedelta(days=4)
    )
    assert [c.ts for c in candles] == [payloads.T0 + timedelta(days=i) for i in range(5)]
    assert candles[3].open == 53.0 and candles[3].trades == 10
    key = API_KEYS["POLYGON"]
    assert [r.args.get("apiKey") for r, _ in httpserver.log] == [key, key]
    assert httpserver.log[1][0].args["cursor"] == "abc"
    assert attempts("POLYGON") == [(1, "ok", 200), (1, "ok", 200)]
    assert all(key not in r.getMessage() for r in caplog.records if r.name != "werkzeug")  # werkzeug: the fake server


def test_polygon_ticker_details(providers, httpserver, client_options):
    httpserver.expect_request("/v3/reference/tickers/AAPL").respond_with_json(payloads.polygon_ticker())
    info = get_client("POLYGON", **client_options).fetch_asset_info(provider_symbol="AAPL")
    assert info.name == "Apple Inc." and info.country == "US" and info.currency == "USD"
    assert info.market_cap == 2771126040150 and info.website == "https://www.apple.com"
    assert info.industry == "ELECTRONIC COMPUTERS"


def test_polygon_refuses_a_next_url_to_another_host(providers, httpserver, client_options):
    httpserver.expect_request("/v2/aggs/ticker/AAPL/range/1/day/1704067200000/1704067200000").respond_with_json(
        payloads.polygon_aggs(payloads.T0, 1, next_url="https://evil.example.com/steal")
    )
    with pytest.raises(ProviderError, match="next_url"):
        get_client("POLYGON", **client_options).fetch_candles(
            provider_symbol="AAPL", timeframe="1d", start=payloads.T0, end=payloads.T0
        )


# -- CoinMarketCap -----------------------------------------------------------------------------
def test_coinmarketcap_info_sends_the_key_as_a_header(providers, httpserver, client_options):
    httpserver.expect_request("/v1/cryptocurrency/info", query_string="symbol=BTC").respond_with_json(
        payloads.cmc_info()
    )
    # Werkzeug drops headers with underscores before the handler sees them, so
    # the header is checked on the request as sent.
    session = requests.Session()
    sent: list[requests.PreparedRequest] = []
    session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request))
    info = get_client("COINMARKETCAP", session=session, **client_options).fetch_asset_info(provider_symbol="BTC")
    assert sent[0].headers["X-CMC_PRO_API_KEY"] == API_KEYS["COINMARKETCAP"]
    assert API_KEYS["COINMARKETCAP"] not in sent[0].url
    assert info.known() == {
        "name": "Bitcoin",
        "description": "Bitcoin (BTC) is a cryptocurrency.",
        "website": "https://bitcoin.org/",
        "category": "Coin",
    }


def test_coinmarketcap_bad_key_is_permanent_and_counts_against_the_circuit(providers, httpserver, client_options):
    httpserver.expect_request("/v1/cryptocurrency/info").respond_with_json(
        payloads.cmc_error(1002, "API key missing."), status=401
    )
    with pytest.raises(ProviderError) as err:
        get_client("COINMARKETCAP", **client_options).fetch_asset_info(provider_symbol="BTC")
    assert err.value.permanent and err.value.reason == "unauthorized"
    assert attempts("COINMARKETCAP") == [(1, "unauthorized", 401)]
    assert CircuitState.objects.get(provider="COINMARKETCAP").consecutive_failures == 1


def test_coinmarketcap_rate_limit_in_the_body_is_retried(providers, httpserver, client_options):
    httpserver.expect_oneshot_request("/v1/cryptocurrency/info").respond_with_json(
        payloads.cmc_error(1008, "You've exceeded your API Key's HTTP request rate limit.")
    )
    httpserver.expect_request("/v1/cryptocurrency/info").respond_with_json(payloads.cmc_info("ETH", "Ethereum"))
    assert get_client("COINMARKETCAP", **client_options).fetch_asset_info(provider_symbol="ETH").name == "Ethereum"
    assert attempts("COINMARKETCAP") == [(1, "throttled", 200), (2, "ok", 200)]


# -- Alpha Vantage -----------------------------------------------------------------------------
def test_alpha_vantage_overview_cleans_none_strings(providers, httpserver, client_options):
    httpserver.expect_request(
        "/query", query_string={"function": "OVERVIEW", "symbol": "IBM", "apikey": API_KEYS["ALPHA_VANTAGE"]}
    ).respond_with_json(payloads.av_overview())
    info = get_client("ALPHA_VANTAGE", **client_options).fetch_asset_info(provider_symbol="IBM")
    assert info.known() == {
        "name": "International Business Machines",
        "sector": "Technology",
        "industry": "Computer & Office Equipment",
        "country": "US",
        "currency": "USD",
        "market_cap": 189000000000,
        "description": "IBM is an American multinational technology company.",
        "website": "https://www.ibm.com",
        "category": "Common Stock",
    }


@pytest.mark.parametrize("note", [payloads.AV_NOTE, payloads.AV_INFORMATION])
def test_alpha_vantage_throttle_notes_are_retried_like_429(providers, httpserver, client_options, note):
    httpserver.expect_oneshot_request("/query").respond_with_json(note)
    httpserver.expect_request("/query").respond_with_json(payloads.av_overview())
    info = get_client("ALPHA_VANTAGE", **client_options).fetch_asset_info(provider_symbol="IBM")
    assert info.name == "International Business Machines"
    assert attempts("ALPHA_VANTAGE") == [(1, "throttled", 200), (2, "ok", 200)]


def test_alpha_vantage_throttled_every_time_fails_transiently(providers, httpserver, client_options):
    httpserver.expect_request("/query").respond_with_json(payloads.AV_NOTE)
    with pytest.raises(ProviderError) as err:
        get_client("ALPHA_VANTAGE", **client_options).fetch_asset_info(provider_symbol="IBM")
    assert not err.value.permanent and err.value.reason == "throttled"
    assert [a for a, _, _ in attempts("ALPHA_VANTAGE")] == [1, 2, 3]


def test_alpha_vantage_empty_object_means_unknown_symbol(providers, httpserver, client_options):
    httpserver.expect_request("/query").respond_with_json({})
    client = get_client("ALPHA_VANTAGE", **client_options)
    with pytest.raises(ProviderError) as err:
        client.fetch_asset_info(provider_symbol="ZZZZ")
    assert err.value.permanent and err.value.reason == "empty"
    assert attempts("ALPHA_VANTAGE") == [(1, "empty", 200)]
    assert client.validate_symbol(provider_symbol="ZZZZ") is False


def test_keys_never_reach_the_fetch_log(providers, httpserver, client_options, caplog):
    caplog.set_level(logging.DEBUG)
    httpserver.expect_request("/query").respond_with_data(
        f"upstream said: bad apikey={API_KEYS['ALPHA_VANTAGE']}", status=400
    )
    with pytest.raises(ProviderError) as err:
        get_client("ALPHA_VANTAGE", **client_options).fetch_asset_info(provider_symbol="IBM")
    assert API_KEYS["ALPHA_VANTAGE"] not in str(err.value)
    for error in FetchLog.objects.values_list("error", flat=True):
        assert API_KEYS["ALPHA_VANTAGE"] not in error
    assert all(API_KEYS["ALPHA_VANTAGE"] not in r.getMessage() for r in caplog.records if r.name != "werkzeug")


def test_attempts_are_counted_in_prometheus(providers, httpserver, client_options):
    from prometheus_client import REGISTRY

    def count(outcome: str) -> float:
        value = REGISTRY.get_sample_value(
            "enrichment_provider_requests_total", {"provider": "YAHOO_FINANCE", "outcome": outcome}
        )
        return value or 0.0

    before = count("server_error"), count("ok")
    httpserver.expect_oneshot_request(NVDA).respond_with_data("x", status=503)
    httpserver.expect_request(NVDA).respond_with_json(payloads.yahoo_chart("NVDA", start=payloads.T0, bars=1))
    get_client("YAHOO_FINANCE", **client_options).fetch_asset_info(provider_symbol="NVDA")
    assert (count("server_error") - before[0], count("ok") - before[1]) == (1, 1)
