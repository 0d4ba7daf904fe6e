"""The doors: API, admin, command, task and pipeline step all reach the same services."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from enrichment.conftest import API_KEYS
from enrichment.models import AssetEnrichmentRun, CircuitState, FetchLog
from enrichment.providers import circuit
from enrichment.providers.tests import payloads
from etl.models import AssetClass, DataProvider, DeadLetter, Market, Symbol, SymbolMapping
from etl.pipeline import get_step

pytestmark = pytest.mark.django_db

PERM = "enrichment.run_enrichment"


@pytest.fixture
def thyao(providers):
    return Symbol.objects.create(
        ticker="THYAO", market=Market.objects.get(code="BIST"), asset_class=AssetClass.objects.get(code="STOCK_BIST")
    )


THYAO_QUOTE = payloads.yahoo_quote_row(
    "THYAO.IS", long_name="Turk Hava Yollari", currency="TRY", tz="Europe/Istanbul", exchange="IST"
)


@pytest.fixture
def serve_thyao(httpserver):
    """Quote (enrichment) and chart (mapping validation)."""
    payloads.serve_yahoo_quote(httpserver, "THYAO.IS", [THYAO_QUOTE])
    httpserver.expect_request("/v8/finance/chart/THYAO.IS").respond_with_json(
        payloads.yahoo_chart(
            "THYAO.IS", start=payloads.T0, bars=1, long_name="Turk Hava Yollari", currency="TRY", tz="Europe/Istanbul"
        )
    )


@pytest.fixture
def fast(settings):
    settings.ENRICHMENT_BACKOFF_BASE = 0.001
    settings.ENRICHMENT_BACKOFF_MAX = 0.01


@pytest.fixture
def q_sync(monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


# -- API ----------------------------------------------------------------------------------------
WRITE_ENDPOINTS = [
    ("etl-enrich-assets", {"selection": "all", "sources": ["LOCAL"], "concurrency": 1}),
    ("etl-enrichment-dead-letters-resubmit", {}),
    ("etl-discover-symbols", {}),
]
READ_ENDPOINTS = ["etl-enrichment-status", "etl-enrichment-sources-status", "etl-enrichment-dead-letters"]


@pytest.mark.parametrize(("name", "body"), WRITE_ENDPOINTS)
def test_writes_refuse_anonymous_and_non_staff(providers, api_anon, api_client_for, name, body):
    assert api_anon.post(reverse(name), body, format="json").status_code in (401, 403)
    assert api_client_for().post(reverse(name), body, format="json").status_code == 403
    assert api_client_for(staff=True).post(reverse(name), body, format="json").status_code == 403  # no permission


@pytest.mark.parametrize("name", READ_ENDPOINTS)
def test_reads_need_a_user(providers, api_anon, api_client_for, name):
    assert api_anon.get(reverse(name)).status_code in (401, 403)
    assert api_client_for().get(reverse(name)).status_code == 200


def test_enrich_assets_endpoint_runs_the_service(thyao, serve_thyao, api_client_for, fast):
    client = api_client_for(staff=True, perms=(PERM,))
    response = client.post(
        reverse("etl-enrich-assets"),
        {"sources": ["YAHOO_FINANCE", "LOCAL"], "concurrency": 1, "symbols": ["THYAO@BIST"], "run_async": False},
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["total"], body["enriched"]) == (1, 1)
    assert body["symbols"][0]["symbol"] == "THYAO@BIST"
    thyao.refresh_from_db()
    assert thyao.name == "Turk Hava Yollari" and thyao.quote_currency == "TRY"
    status = client.get(reverse("etl-enrichment-status")).json()
    assert status["enriched"] == 1 and status["coverage_percent"] == 100.0 and status["runs"][0]["enriched"] == 1
    run = client.get(reverse("etl-enrichment-run", args=[body["run_id"]])).json()
    assert run["status"] == "succeeded" and run["percent"] == 100.0


def test_enrich_assets_async_queues_a_run(thyao, api_client_for, q_sync, django_capture_on_commit_callbacks):
    client = api_client_for(staff=True, perms=(PERM,))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("etl-enrich-assets"), {"sources": ["LOCAL"], "run_async": True, "concurrency": 1}, format="json"
        )
    assert response.status_code == 202
    run = AssetEnrichmentRun.objects.get(pk=response.json()["id"])
    assert run.status == "succeeded" and run.partial == 1  # ran in the (synchronous) worker


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"selection": "whenever"}, "selection"),
        ({"sources": ["NOPE"]}, "NOPE: no such provider"),
        ({"symbols": ["ZZZ"]}, "Unknown symbol"),
        ({"concurrency": 0}, "concurrency"),
    ],
)
def test_bad_enrich_requests_are_400_with_a_reason(providers, api_client_for, body, fragment):
    response = api_client_for(staff=True, perms=(PERM,)).post(reverse("etl-enrich-assets"), body, format="json")
    assert response.status_code == 400
    assert fragment in json.dumps(response.json())


def test_sources_status_shows_circuit_budget_success_and_never_the_key(
    providers, api_client_for, httpserver, serve_thyao
):
    from enrichment.providers.clients import get_client

    get_client("YAHOO_FINANCE").fetch_asset_info(provider_symbol="THYAO.IS")
    for _ in range(3):
        circuit.circuit_record_failure("POLYGON", error="HTTP 503")
    DataProvider.objects.filter(code="ALPHA_VANTAGE").update(is_enabled=False)
    response = api_client_for().get(reverse("etl-enrichment-sources-status"))
    assert response.status_code == 200
    rows = {r["code"]: r for r in response.json()["providers"]}
    assert rows["YAHOO_FINANCE"]["availability"] == "available" and rows["YAHOO_FINANCE"]["success_rate_24h"] == 1.0
    assert rows["YAHOO_FINANCE"]["budget_used"] == 1 and rows["YAHOO_FINANCE"]["budget_remaining"] == 59
    assert rows["POLYGON"]["availability"] == "circuit_open" and rows["POLYGON"]["last_error"] == "HTTP 503"
    assert rows["POLYGON"]["retry_at"] is not None
    assert rows["ALPHA_VANTAGE"]["availability"] == "disabled"
    assert rows["COINMARKETCAP"]["has_api_key"] is True
    for key in API_KEYS.values():
        if key:
            assert key not in response.content.decode()


def test_offline_sources_show_unavailable(providers, api_client_for, settings):
    settings.PROVIDER_API_KEYS = {}
    DataProvider.objects.update(base_url="http://127.0.0.1:9")
    from enrichment.providers.clients import get_client
    from enrichment.providers.errors import ProviderError

    with pytest.raises(ProviderError):
        get_client("BINANCE").list_symbols()
    rows = {r["code"]: r for r in api_client_for().get(reverse("etl-enrichment-sources-status")).json()["providers"]}
    assert rows["BINANCE"]["availability"] == "unreachable" and rows["BINANCE"]["available"] is False
    assert rows["POLYGON"]["availability"] == "no_key"


def test_dead_letters_list_and_resubmit(thyao, httpserver, api_client_for, fast):
    payloads.serve_yahoo_handshake(httpserver)
    httpserver.expect_request("/v7/finance/quote").respond_with_data("down", status=500)
    client = api_client_for(staff=True, perms=(PERM,))
    client.post(
        reverse("etl-enrich-assets"),
        {"sources": ["YAHOO_FINANCE"], "concurrency": 1, "max_retries": 1, "selection": "all", "run_async": False},
        format="json",
    )
    letters = client.get(reverse("etl-enrichment-dead-letters")).json()
    assert [d["ref"] for d in letters] == ["THYAO@BIST"]
    httpserver.clear()
    payloads.serve_yahoo_quote(httpserver, "THYAO.IS", [THYAO_QUOTE])
    response = client.post(reverse("etl-enrichment-dead-letters-resubmit"), {"ids": [letters[0]["id"]]}, format="json")
    assert response.status_code == 200 and response.json()["resolved"] == 1
    assert client.get(reverse("etl-enrichment-dead-letters")).json() == []
    again = client.post(reverse("etl-enrichment-dead-letters-resubmit"), {}, format="json")
    assert again.status_code == 400 and again.json()["code"] == "nothing_to_resubmit"


def test_async_resubmit_queues_after_commit_and_refuses_when_nothing_is_open(
    thyao, httpserver, api_client_for, fast, q_sync, django_capture_on_commit_callbacks
):
    payloads.serve_yahoo_handshake(httpserver)
    httpserver.expect_request("/v7/finance/quote").respond_with_data("down", status=500)
    client = api_client_for(staff=True, perms=(PERM,))
    options = {"sources": ["YAHOO_FINANCE"], "concurrency": 1, "max_retries": 1, "selection": "all", "run_async": False}
    client.post(reverse("etl-enrich-assets"), options, format="json")
    httpserver.clear()
    payloads.serve_yahoo_quote(httpserver, "THYAO.IS", [THYAO_QUOTE])
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post(reverse("etl-enrichment-dead-letters-resubmit"), {"run_async": True}, format="json")
    assert response.status_code == 202
    assert response.json() == {"status": "queued", "dead_letters": 1, "ignored_options": {}}
    # Queued once, on commit: nothing ran while the request's transaction was open.
    assert len(queued) == 1 and DeadLetter.objects.get().resolved_at is None
    queued[0]()
    assert DeadLetter.objects.get().resolved_at is not None
    again = client.post(reverse("etl-enrichment-dead-letters-resubmit"), {"run_async": True}, format="json")
    assert again.status_code == 400 and again.json()["code"] == "nothing_to_resubmit"


def test_discover_endpoint(providers, httpserver, api_client_for, fast):
    httpserver.expect_request("/fapi/v1/exchangeInfo").respond_with_json(
        payloads.binance_exchange_info([("SOLUSDT", "SOL", "USDT")])
    )
    response = api_client_for(staff=True, perms=(PERM,)).post(reverse("etl-discover-symbols"), {}, format="json")
    assert response.status_code == 200 and response.json()["created"] == 1
    bad = api_client_for(staff=True, perms=(PERM,)).post(
        reverse("etl-discover-symbols"), {"provider": "YAHOO_FINANCE"}, format="json"
    )
    assert bad.status_code == 400


def test_mapping_validate_endpoint(thyao, serve_thyao, api_client_for, fast):
    from enrichment.assets.services.mapping import mappings_ensure

    mappings_ensure()
    m = SymbolMapping.objects.get(symbol=thyao)
    url = reverse("etl-mapping-validate", args=[m.pk])
    assert api_client_for().post(url).status_code == 403
    response = api_client_for(staff=True, perms=(PERM,)).post(url)
    assert response.status_code == 200 and response.json()["is_valid"] is True


# -- admin ----------------------------------------------------------------------------------------
def test_admin_provider_status_page(providers, admin_client):
    for _ in range(3):
        circuit.circuit_record_failure("BINANCE", error="HTTP 418 banned")
    response = admin_client.get(reverse("admin:enrichment_providerstatus_changelist"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "circuit open" in html and "Open (3 failures" in html and "HTTP 418 banned" in html and "1200/1200" in html
    response = admin_client.post(
        reverse("admin:enrichment_providerstatus_changelist"),
        {"action": "reset_circuit", "_selected_action": [DataProvider.objects.get(code="BINANCE").pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert CircuitState.objects.get(provider="BINANCE").state == "closed"


def test_admin_enrich_selected_runs_for_those_symbols(thyao, admin_client, q_sync, django_capture_on_commit_callbacks):
    other = Symbol.objects.create(ticker="GARAN", market=thyao.market, asset_class=thyao.asset_class)
    DataProvider.objects.update(is_enabled=False)  # local data only, no network
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:enrichment_symbolforenrichment_changelist"),
            {"action": "enrich_selected", "_selected_action": [thyao.pk]},
            follow=True,
        )
    assert response.status_code == 200 and "Queued enrichment run" in response.content.decode()
    run = AssetEnrichmentRun.objects.get()
    assert run.status == "succeeded" and list(run.results.values_list("symbol_id", flat=True)) == [thyao.pk]
    assert other.pk not in run.options["symbol_ids"]


def test_admin_mapping_editor_marks_edits_manual_and_validates(thyao, admin_client, serve_thyao, fast):
    from enrichment.assets.services.mapping import mappings_ensure

    admin_client.post(
        reverse("admin:enrichment_symbolforenrichment_changelist"),
        {"action": "infer_mappings", "_selected_action": [thyao.pk]},
    )
    m = SymbolMapping.objects.get(symbol=thyao)
    assert m.provider_symbol == "THYAO.IS" and m.origin == "inferred"
    url = reverse("admin:enrichment_providermapping_change", args=[m.pk])
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(
        url, {"symbol": thyao.pk, "provider": m.provider_id, "provider_symbol": "THYAO.E"}, follow=True
    )
    assert response.status_code == 200
    m.refresh_from_db()
    assert (m.provider_symbol, m.origin) == ("THYAO.E", "manual")
    assert mappings_ensure().created == 0  # the manual spelling stays
    SymbolMapping.objects.filter(pk=m.pk).update(provider_symbol="THYAO.IS")
    response = admin_client.post(
        reverse("admin:enrichment_providermapping_changelist"),
        {"action": "validate_selected", "_selected_action": [m.pk]},
        follow=True,
    )
    assert "1 valid" in response.content.decode()
    m.refresh_from_db()
    assert m.is_valid is True


def test_admin_dead_letter_resubmit(thyao, admin_client, serve_thyao, fast, q_sync, django_capture_on_commit_callbacks):
    letter = DeadLetter.objects.create(
        kind="enrichment",
        ref="THYAO@BIST",
        error="YAHOO_FINANCE: HTTP 500",
        payload={"symbol_id": thyao.pk, "options": {"sources": ["YAHOO_FINANCE"], "concurrency": 1}},
    )
    DeadLetter.objects.create(kind="import_file", ref="x.csv", error="other app")
    changelist = reverse("admin:enrichment_enrichmentdeadletter_changelist")
    page = admin_client.get(changelist).content.decode()
    assert "THYAO@BIST" in page and "x.csv" not in page
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(changelist, {"action": "resubmit", "_selected_action": [letter.pk]}, follow=True)
    letter.refresh_from_db()
    assert letter.resolved_at is not None
    thyao.refresh_from_db()
    assert thyao.name == "Turk Hava Yollari"


def test_admin_runs_fetch_log_and_circuits_pages(thyao, admin_client):
    from enrichment.assets.services.enrich import assets_enrich
    from enrichment.assets.services.enrich_options import EnrichOptions

    result = assets_enrich(options=EnrichOptions(sources=("LOCAL",), concurrency=1))
    FetchLog.objects.create(provider="BINANCE", endpoint="klines", duration_ms=1, outcome="ok")
    circuit.circuit_record_failure("BINANCE", error="x")
    for name in ("assetenrichmentrun_changelist", "fetchlog_changelist", "circuitstate_changelist"):
        assert admin_client.get(reverse(f"admin:enrichment_{name}")).status_code == 200
    assert (
        admin_client.get(reverse("admin:enrichment_assetenrichmentrun_change", args=[result.run_id])).status_code == 200
    )


# -- command, task, pipeline ------------------------------------------------------------------------
def test_command_json_summary(thyao, serve_thyao, fast):
    out = StringIO()
    call_command(
        "enrich_assets",
        "--source",
        "YAHOO_FINANCE",
        "--source",
        "LOCAL",
        "--symbols",
        "THYAO",
        "--json",
        "--concurrency",
        "1",
        stdout=out,
    )
    summary = json.loads(out.getvalue())
    assert summary["ok"] and summary["enriched"] == 1 and summary["sources"] == ["YAHOO_FINANCE", "LOCAL"]


def test_command_human_output_and_bad_input(thyao):
    out = StringIO()
    call_command("enrich_assets", "--source", "LOCAL", "--all", "--concurrency", "1", stdout=out)
    assert "1 symbols, 0 enriched, 1 partial" in out.getvalue()
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="unknown source"):
        call_command("enrich_assets", "--source", "NOPE", stdout=StringIO())


def test_pipeline_step_is_registered():
    step = get_step("enrich")
    assert step is not None and step.order == 50


def test_task_runs_a_queued_run(thyao):
    from enrichment.assets import tasks as tasks_assets

    run = AssetEnrichmentRun.objects.create(options={"sources": ["LOCAL"], "concurrency": 1, "selection": "all"})
    assert tasks_assets.assets_enrich(run.pk)["partial"] == 1


def test_run_and_mapping_endpoints_refuse_anonymous(thyao, api_anon, api_client_for):
    from enrichment.assets.services.enrich import assets_enrich
    from enrichment.assets.services.enrich_options import EnrichOptions
    from enrichment.assets.services.mapping import mappings_ensure

    run_id = assets_enrich(options=EnrichOptions(sources=("LOCAL",), concurrency=1)).run_id
    mappings_ensure()
    run_url = reverse("etl-enrichment-run", args=[run_id])
    assert api_anon.get(run_url).status_code in (401, 403)
    assert api_client_for().get(run_url).status_code == 200
    assert api_client_for().get(reverse("etl-enrichment-run", args=[run_id + 999])).status_code == 404
    validate_url = reverse("etl-mapping-validate", args=[SymbolMapping.objects.first().pk])
    assert api_anon.post(validate_url).status_code in (401, 403)
    assert api_client_for(staff=True).post(validate_url).status_code == 403


def test_enrichment_stores_inferred_mappings_for_the_editor(thyao):
    from enrichment.assets.services.enrich import assets_enrich
    from enrichment.assets.services.enrich_options import EnrichOptions

    assets_enrich(options=EnrichOptions(concurrency=1, max_retries=1), client_options={"sleep": lambda s: None})
    assert list(SymbolMapping.objects.filter(symbol=thyao).values_list("provider__code", "provider_symbol")) == [
        ("YAHOO_FINANCE", "THYAO.IS")
    ]


@pytest.mark.parametrize(
    "name",
    [
        "providerstatus",
        "symbolforenrichment",
        "providermapping",
        "enrichmentdeadletter",
        "assetenrichmentrun",
        "fetchlog",
        "circuitstate",
    ],
)
def test_every_enrichment_admin_list_renders(thyao, admin_client, name):
    from enrichment.assets.services.mapping import mappings_ensure

    mappings_ensure()
    DeadLetter.objects.create(kind="enrichment", ref="THYAO@BIST", error="e", payload={"symbol_id": thyao.pk})
    assert admin_client.get(reverse(f"admin:enrichment_{name}_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:index")).status_code == 200


def test_staff_without_the_permission_cannot_enrich_from_the_admin(thyao, client, make_user):
    from django.contrib.auth.models import Permission

    user = make_user(staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_symbolforenrichment"))
    client.force_login(user)
    url = reverse("admin:enrichment_symbolforenrichment_changelist")
    page = client.get(url)
    assert page.status_code == 200 and "enrich_selected" not in page.content.decode()
    client.post(url, {"action": "enrich_selected", "_selected_action": [thyao.pk]})
    assert not AssetEnrichmentRun.objects.exists()


def test_the_admin_discovers_symbols_with_the_same_service(providers, httpserver, admin_client, fast, make_user):
    httpserver.expect_request("/fapi/v1/exchangeInfo").respond_with_json(
        payloads.binance_exchange_info([("SOLUSDT", "SOL", "USDT"), ("SOLUSDC", "SOL", "USDC")])
    )
    url = reverse("admin:enrichment_discover")
    assert admin_client.get(url).status_code == 200
    changelist = reverse("admin:enrichment_symbolforenrichment_changelist")
    assert url in admin_client.get(changelist).content.decode()  # the "Discover symbols" link
    response = admin_client.post(url, {"provider": "BINANCE", "quote_assets": "USDT, USDC"}, follow=True)
    assert "2 new symbol(s)" in response.content.decode()
    assert set(Symbol.objects.filter(source="discovered").values_list("ticker", flat=True)) == {"SOLUSDT", "SOLUSDC"}
    from django.test import Client

    refused = Client()
    refused.force_login(make_user(staff=True))
    assert refused.post(url, {"provider": "BINANCE", "quote_assets": "USDT"}).status_code == 302
    assert Symbol.objects.filter(source="discovered").count() == 2


def test_the_admin_shows_why_discovery_failed(providers, httpserver, admin_client, fast):
    httpserver.expect_request("/fapi/v1/exchangeInfo").respond_with_data("oops", status=500)
    response = admin_client.post(reverse("admin:enrichment_discover"), {"provider": "BINANCE", "quote_assets": ""})
    assert response.status_code == 200 and "Could not read the BINANCE listing" in response.content.decode()
