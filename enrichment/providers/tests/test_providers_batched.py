"""A client that keeps its bookkeeping in blocks (`batched=True`, the live poller's): the same
fetch-log rows and counters, the same circuit behaviour and the same shared budget as one
request at a time, in a few statements per block instead of a dozen per request."""

from __future__ import annotations

import json
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from werkzeug import Response

from enrichment.models import CircuitState, FetchLog, RateLimitGrant
from enrichment.providers import bookkeeping
from enrichment.providers.clients import get_client
from enrichment.providers.errors import ProviderError
from enrichment.providers.ratelimit import rate_limit_budget
from enrichment.providers.tests import payloads
from enrichment.providers.tests.test_providers_shared_state import run_workers
from etl.events import metric_samples, stored_value
from etl.models import DataProvider

NVDA = "/v8/finance/chart/NVDA"
BOOKKEEPING_TABLES = ("enrichment_fetch_log", "enrichment_rate_grants", "enrichment_circuit_state", "metric_deltas")


def chart() -> dict:
    return payloads.yahoo_chart("NVDA", start=payloads.T0, bars=1)


def bookkeeping_statements(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if any(t in q["sql"] for t in BOOKKEEPING_TABLES)]


def requests_counted(outcome: str) -> float:
    metric_samples()  # fold the deltas, as a scrape does
    return stored_value("enrichment_provider_requests_total", provider="YAHOO_FINANCE", outcome=outcome) or 0.0


@pytest.mark.django_db
def test_many_calls_keep_a_row_each_and_their_counts_in_a_few_statements(providers, httpserver, client_options):
    httpserver.expect_request(NVDA).respond_with_json(chart())
    DataProvider.objects.filter(code="YAHOO_FINANCE").update(rate_limit_per_minute=2000)  # blocks up to 100
    before = requests_counted("ok")
    client = get_client("YAHOO_FINANCE", **client_options, batched=True)
    with CaptureQueriesContext(connection) as queries:
        for _ in range(40):
            client.fetch_asset_info(provider_symbol="NVDA")
        client.close()
    # Per request it was a circuit read, the limiter's transaction, a success check, a fetch-log
    # row and two counter inserts: over 200 statements for 40 calls.
    assert len(bookkeeping_statements(queries)) < 40
    rows = list(FetchLog.objects.filter(provider="YAHOO_FINANCE").values_list("attempt", "outcome", "status_code"))
    assert rows == [(1, "ok", 200)] * 40
    assert requests_counted("ok") - before == 40
    # The budget spent is what the 40 calls weigh: a block's unused part was given back.
    assert rate_limit_budget(provider_code="YAHOO_FINANCE", budget=2000).used == 40
    assert sum(RateLimitGrant.objects.filter(provider="YAHOO_FINANCE").values_list("weight", flat=True)) == 40


@pytest.mark.django_db
def test_a_block_is_only_spent_shortly_after_its_grant(providers, httpserver, client_options, monkeypatch):
    httpserver.expect_request(NVDA).respond_with_json(chart())
    client = get_client("YAHOO_FINANCE", **client_options, batched=True)
    client.fetch_asset_info(provider_symbol="NVDA")
    client.fetch_asset_info(provider_symbol="NVDA")
    assert RateLimitGrant.objects.filter(provider="YAHOO_FINANCE").count() == 1  # both from the first block
    # Past its spending time a block is not used any more: its requests would reach the
    # provider later than the limiter's margin allows. The next call takes a new grant.
    later = time.monotonic() + 0.6
    monkeypatch.setattr(bookkeeping.time, "monotonic", lambda: later)
    client.fetch_asset_info(provider_symbol="NVDA")
    client.close()
    assert list(
        RateLimitGrant.objects.filter(provider="YAHOO_FINANCE").order_by("id").values_list("weight", flat=True)
    ) == [2, 1]


@pytest.mark.django_db
def test_a_failing_provider_still_opens_the_circuit_and_then_fails_fast(providers, httpserver, client_options):
    healthy = {"on": True}

    def handler(request):
        if healthy["on"]:
            return Response(json.dumps(chart()), content_type="application/json")
        return Response("down", status=503)

    httpserver.expect_request(NVDA).respond_with_handler(handler)
    client = get_client("YAHOO_FINANCE", **{**client_options, "max_attempts": 1}, batched=True)
    client.fetch_asset_info(provider_symbol="NVDA")  # a healthy start: the snapshot says closed
    healthy["on"] = False
    for _ in range(3):
        with pytest.raises(ProviderError) as err:
            client.fetch_asset_info(provider_symbol="NVDA")
        assert err.value.reason == "server_error"
    assert CircuitState.objects.get(provider="YAHOO_FINANCE").state == "open"
    with pytest.raises(ProviderError) as err:
        client.fetch_asset_info(provider_symbol="NVDA")
    assert err.value.reason == "circuit_open"
    assert len(httpserver.log) == 4  # the fifth call never left the process
    client.close()
    outcomes = list(FetchLog.objects.filter(provider="YAHOO_FINANCE").order_by("id").values_list("outcome", flat=True))
    assert outcomes == ["ok", "server_error", "server_error", "server_error", "circuit_open"]


@pytest.mark.django_db
def test_a_circuit_another_worker_opened_is_seen_within_the_snapshot_time(
    providers, httpserver, client_options, monkeypatch
):
    httpserver.expect_request(NVDA).respond_with_json(chart())
    client = get_client("YAHOO_FINANCE", **client_options, batched=True)
    client.fetch_asset_info(provider_symbol="NVDA")
    CircuitState.objects.filter(provider="YAHOO_FINANCE").update(
        state="open", consecutive_failures=3, opened_at=CircuitState.objects.get(provider="YAHOO_FINANCE").updated_at
    )
    later = time.monotonic() + bookkeeping.SNAPSHOT_SECONDS + 0.1
    monkeypatch.setattr(bookkeeping.time, "monotonic", lambda: later)
    with pytest.raises(ProviderError) as err:
        client.fetch_asset_info(provider_symbol="NVDA")
    assert err.value.reason == "circuit_open" and len(httpserver.log) == 1
    client.close()


@pytest.mark.django_db
def test_a_block_never_takes_more_than_the_budget_left(providers, httpserver, client_options):
    httpserver.expect_request(NVDA).respond_with_json(chart())
    DataProvider.objects.filter(code="YAHOO_FINANCE").update(rate_limit_per_minute=5)
    client = get_client("YAHOO_FINANCE", **{**client_options, "rate_max_wait": 0.5}, batched=True)
    for _ in range(5):
        client.fetch_asset_info(provider_symbol="NVDA")
    with pytest.raises(ProviderError) as err:
        client.fetch_asset_info(provider_symbol="NVDA")
    assert err.value.reason == "rate_limited" and len(httpserver.log) == 5
    client.close()
    assert rate_limit_budget(provider_code="YAHOO_FINANCE", budget=5).used == 5


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_two_batched_worker_processes_stay_within_the_budget(providers, httpserver):
    httpserver.expect_request(NVDA).respond_with_json(chart())
    # 1200 a minute over a 2 s window is 40 a window; two workers want 70 calls each, in blocks.
    DataProvider.objects.filter(code="YAHOO_FINANCE").update(rate_limit_per_minute=1200)
    window, limit = 2.0, 40
    args = {"provider": "YAHOO_FINANCE", "symbol": "NVDA", "calls": 70, "window": window, "batched": True}
    results = run_workers(("hammer", args), ("hammer", args))
    assert [r["outcomes"] for r in results] == [["ok"] * 70, ["ok"] * 70]
    assert len(httpserver.log) == 140 == FetchLog.objects.filter(provider="YAHOO_FINANCE", outcome="ok").count()
    # Counted when the requests left the workers: the in-process test server's own thread
    # scheduling delays some arrivals by up to a quarter of a second on a loaded machine, which
    # says nothing about the limiter (its grants were measured at 40 a window at most).
    sends = sorted(t for r in results for t in r["sends"])
    busiest = max(sum(1 for t in sends if start <= t < start + window - 0.1) for start in sends)
    assert busiest <= limit
    assert sends[-1] - sends[0] >= (140 // limit - 1) * window - 0.2
