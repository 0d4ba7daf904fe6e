"""enrich-assets and its runs under the one request policy (etl/api/request_policy.py):
the old system's names, unknown keys, ignored options kept on the run, sources that
cannot run, curl's form bodies, 202 with Location, runs as resources."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from enrichment.models import AssetEnrichmentRun
from etl.models import AssetClass, DataProvider, Market, RunStatus, Symbol

PERM = "enrichment.run_enrichment"
ENRICH = "/api/etl/enrich-assets"


@pytest.fixture
def staff(providers, api_client_for):
    Symbol.objects.create(
        ticker="THYAO", market=Market.objects.get(code="BIST"), asset_class=AssetClass.objects.get(code="STOCK_BIST")
    )
    return api_client_for(staff=True, perms=(PERM,))


def test_old_names_and_ignored_options_are_answered_and_kept_on_the_queued_run(staff):
    body = {"enabledSources": ["LOCAL"], "maxConcurrency": 1, "rateLimitDelay": "00:00:01", "includeMarketCap": True}
    response = staff.post(ENRICH, body, format="json")
    assert response.status_code == 202, response.json()
    answer = response.json()
    assert response["Location"] == answer["location"]
    assert answer["location"].endswith(f"/api/runs/asset-enrichment/{answer['run_id']}/")
    assert set(answer["ignored_options"]) == {"includeMarketCap"}
    run = AssetEnrichmentRun.objects.get(pk=answer["run_id"])
    assert (run.options["sources"], run.options["concurrency"], run.options["rate_limit_delay"]) == (["LOCAL"], 1, 1.0)
    assert set(run.options["ignored_options"]) == {"includeMarketCap"}
    status = staff.get(response["Location"]).json()
    assert status["status"] == "queued" and set(status["ignored_options"]) == {"includeMarketCap"}
    assert "SuccessfullyEnriched" in status and "PartiallyEnriched" in status


def test_in_the_request_the_old_response_names_are_there(staff):
    response = staff.post(ENRICH, {"sources": ["LOCAL"], "runAsync": False}, format="json")
    assert response.status_code == 200, response.json()
    answer = response.json()
    assert answer["SuccessfullyEnriched"] == answer["enriched"] and answer["PartiallyEnriched"] == answer["partial"]
    assert answer["ignored_options"] == {}


def test_an_unknown_key_is_a_400_naming_it_and_nothing_is_queued(staff):
    response = staff.post(ENRICH, {"enabledSauces": ["LOCAL"]}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "unknown_field" and "enabledSauces" in response.json()["errors"]
    assert not AssetEnrichmentRun.objects.exists()


def test_a_named_source_without_its_key_is_a_400_saying_why(staff, settings):
    settings.PROVIDER_API_KEYS = {}
    DataProvider.objects.filter(code="COINMARKETCAP").update(requires_api_key=True)
    response = staff.post(ENRICH, {"enabledSources": ["COINMARKETCAP"]}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "source_unavailable"
    assert "COINMARKETCAP_API_KEY" in json.dumps(response.json()["errors"])
    assert not AssetEnrichmentRun.objects.exists()


def test_curls_form_body_is_read_as_json(staff):
    response = staff.post(
        ENRICH, data='{"maxConcurrency": 1, "sources": ["LOCAL"]}', content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 202, response.json()
    assert AssetEnrichmentRun.objects.get(pk=response.json()["run_id"]).options["concurrency"] == 1


def test_an_unknown_symbol_is_a_400_before_anything_is_queued(staff):
    response = staff.post(ENRICH, {"symbols": ["ZZZ"]}, format="json")
    assert response.status_code == 400 and "ZZZ" in response.json()["detail"]
    assert not AssetEnrichmentRun.objects.exists()


def test_status_and_dead_letters_take_camel_case_and_refuse_unknown_parameters(staff):
    status = staff.get("/api/etl/enrichment-status?staleDays=5").json()
    assert status["stale_days"] == 5 and status["EnrichmentCoverage"] == status["coverage_percent"]
    assert staff.get("/api/etl/enrichment-status?stale=5").json()["code"] == "unknown_field"
    assert staff.get("/api/etl/enrichment-dead-letters?includeResolved=true").status_code == 200
    assert staff.get("/api/etl/enrichment-dead-letters?resolved=1").status_code == 400


def test_runs_resource_lists_newest_first_filters_cancels_and_retries(staff, django_capture_on_commit_callbacks):
    older = AssetEnrichmentRun.objects.create(options={"sources": ["LOCAL"], "ignored_options": {"x": "y"}})
    newer = AssetEnrichmentRun.objects.create(options={}, status=RunStatus.SUCCEEDED)
    listed = staff.get("/api/runs/asset-enrichment/").json()["results"]
    assert [r["id"] for r in listed] == [newer.pk, older.pk]
    queued = staff.get("/api/runs/asset-enrichment/?status=queued").json()["results"]
    assert [r["id"] for r in queued] == [older.pk]
    assert staff.get("/api/runs/asset-enrichment/?colour=red").status_code == 400
    cancelled = staff.post(f"/api/runs/asset-enrichment/{older.pk}/cancel/")
    assert cancelled.status_code == 200 and AssetEnrichmentRun.objects.get(pk=older.pk).cancel_requested
    with django_capture_on_commit_callbacks(execute=False):
        retried = staff.post(f"/api/runs/asset-enrichment/{older.pk}/retry/")
    assert retried.status_code == 202, retried.json()
    again = AssetEnrichmentRun.objects.get(pk=retried.json()["run_id"])
    assert again.options["sources"] == ["LOCAL"] and "ignored_options" not in again.options
    assert staff.get(reverse("asset-enrichment-run-detail", args=[999_999])).status_code == 404
