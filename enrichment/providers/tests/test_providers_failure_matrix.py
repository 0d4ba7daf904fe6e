"""Every client under every failure the brief names: each ends in the right
outcome and the fetch log holds one row per attempt."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from werkzeug import Response

from enrichment.models import FetchLog
from enrichment.providers.clients import get_client
from enrichment.providers.errors import ProviderError
from enrichment.providers.tests import payloads

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Case:
    provider: str
    path: str
    call: Callable
    good: object
    empty_reason: str  # what `{}` means for this endpoint
    empty_permanent: bool


CASES = [
    Case(
        "YAHOO_FINANCE",
        "/v8/finance/chart/NVDA",
        lambda c: c.fetch_candles(
            provider_symbol="NVDA", timeframe="1d", start=payloads.T0, end=payloads.T0 + timedelta(days=1)
        ),
        payloads.yahoo_chart("NVDA", start=payloads.T0, bars=2),
        "malformed",
        False,
    ),
    Case(
        "BINANCE",
        "/fapi/v1/klines",
        lambda c: c.fetch_candles(
            provider_symbol="BTCUSDT", timeframe="1h", start=payloads.T0, end=payloads.T0 + timedelta(hours=1)
        ),
        [payloads.binance_kline(int(payloads.T0.timestamp() * 1000) + i * 3_600_000, i) for i in range(2)],
        "malformed",
        False,
    ),
    Case(
        "POLYGON",
        "/v3/reference/tickers/AAPL",
        lambda c: c.fetch_asset_info(provider_symbol="AAPL"),
        payloads.polygon_ticker(),
        "empty",
        True,
    ),
    Case(
        "COINMARKETCAP",
        "/v1/cryptocurrency/info",
        lambda c: c.fetch_asset_info(provider_symbol="BTC"),
        payloads.cmc_info(),
        "malformed",
        False,
    ),
    Case(
        "ALPHA_VANTAGE",
        "/query",
        lambda c: c.fetch_asset_info(provider_symbol="IBM"),
        payloads.av_overview(),
        "empty",
        True,
    ),
]
IDS = [c.provider for c in CASES]


def log(provider: str) -> list[tuple[int, str]]:
    return list(FetchLog.objects.filter(provider=provider).order_by("id").values_list("attempt", "outcome"))


@pytest.fixture
def opts(fake_sleep):
    return {"max_attempts": 3, "backoff_base": 0.001, "backoff_max": 0.01, "sleep": fake_sleep}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_429_is_retried_then_succeeds(providers, httpserver, opts, case):
    httpserver.expect_oneshot_request(case.path).respond_with_data("slow down", status=429)
    httpserver.expect_request(case.path).respond_with_json(case.good)
    assert case.call(get_client(case.provider, **opts))
    assert log(case.provider) == [(1, "throttled"), (2, "ok")]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_500s_fail_transiently_after_every_attempt(providers, httpserver, opts, case):
    httpserver.expect_request(case.path).respond_with_data("boom", status=500)
    with pytest.raises(ProviderError) as err:
        case.call(get_client(case.provider, **opts))
    assert not err.value.permanent and err.value.reason == "server_error"
    assert log(case.provider) == [(1, "server_error"), (2, "server_error"), (3, "server_error")]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_slow_answer_times_out(providers, httpserver, opts, case):
    def slow(request):
        time.sleep(0.3)
        return Response(json.dumps(case.good), content_type="application/json")

    httpserver.expect_request(case.path).respond_with_handler(slow)
    with pytest.raises(ProviderError) as err:
        case.call(get_client(case.provider, **{**opts, "max_attempts": 2}, timeout=0.1))
    assert err.value.reason == "timeout"
    assert log(case.provider) == [(1, "timeout"), (2, "timeout")]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_malformed_json_fails_once(providers, httpserver, opts, case):
    httpserver.expect_request(case.path).respond_with_data("{not json", content_type="application/json")
    with pytest.raises(ProviderError) as err:
        case.call(get_client(case.provider, **opts))
    assert err.value.reason == "malformed" and not err.value.permanent
    assert log(case.provider) == [(1, "malformed")]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_an_empty_object(providers, httpserver, opts, case):
    httpserver.expect_request(case.path).respond_with_json({})
    with pytest.raises(ProviderError) as err:
        case.call(get_client(case.provider, **opts))
    assert (err.value.reason, err.value.permanent) == (case.empty_reason, case.empty_permanent)
    assert len(log(case.provider)) == 1


@pytest.mark.parametrize(
    ("case", "note"),
    [
        (CASES[4], payloads.AV_NOTE),
        (CASES[3], payloads.cmc_error(1008, "You've exceeded your API Key's HTTP request rate limit.")),
    ],
    ids=["ALPHA_VANTAGE", "COINMARKETCAP"],
)
def test_a_throttling_note_in_a_200_is_retried(providers, httpserver, opts, case, note):
    httpserver.expect_oneshot_request(case.path).respond_with_json(note)
    httpserver.expect_request(case.path).respond_with_json(case.good)
    assert case.call(get_client(case.provider, **opts))
    assert log(case.provider) == [(1, "throttled"), (2, "ok")]
