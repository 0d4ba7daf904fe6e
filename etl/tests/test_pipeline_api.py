from __future__ import annotations

from unittest import mock

import pytest
from drf_spectacular.generators import SchemaGenerator

from etl import services
from etl.api.runs import INLINE_MAX_SECONDS
from etl.models import DataCorrection, Market, PipelineRun, Symbol

pytestmark = pytest.mark.django_db

WRITES = [
    ("/api/etl/sync-symbols", "etl.sync_symbols", {"dryRun": True}),
    ("/api/etl/execute-full-pipeline", "etl.run_pipeline", {"steps": ["sync"]}),
    ("/api/etl/validate-cleanup-symbols", "etl.clean_symbols", {}),
    ("/api/etl/schedule-recurring", "etl.schedule_pipeline", {"cron": "0 2 * * *", "timezone": "Europe/Istanbul"}),
]
READS = ["/api/etl/status", "/api/etl/symbol-sync-status", "/api/etl/execution-history"]


@pytest.mark.parametrize(("url", "perm", "body"), WRITES)
def test_writes_need_staff_with_the_permission(url, perm, body, reference_data, api_anon, api_client_for):
    assert api_anon.post(url, body, format="json").status_code in (401, 403)
    assert api_client_for().post(url, body, format="json").status_code == 403
    assert api_client_for(staff=True).post(url, body, format="json").status_code == 403
    response = api_client_for(staff=True, perms=(perm,)).post(url, body, format="json")
    assert response.status_code in (200, 201, 202), response.content


@pytest.mark.parametrize("url", READS)
def test_reads_need_authentication(url, reference_data, api_anon, api_client_for):
    assert api_anon.get(url).status_code in (401, 403)
    assert api_client_for().get(url).status_code == 200


@pytest.fixture
def staff(api_client_for):
    return api_client_for(
        staff=True, perms=("etl.sync_symbols", "etl.run_pipeline", "etl.clean_symbols", "etl.schedule_pipeline")
    )


def test_sync_symbols_with_old_system_options(staff, reference_data, make_candles):
    make_candles([("BTCUSDT", "BINANCE"), ("AAPL", "NASDAQ"), ("THYAO", "BIST")])
    body = {"batchSize": 500, "assetClassFilter": ["CRYPTO", "STOCK"], "venueFilter": ["BINANCE", "NASDAQ"]}
    body.update(maxProcessingTime="01:00:00", runAsync=False)
    data = staff.post("/api/etl/sync-symbols", body, format="json").json()
    assert (data["symbols_created"], data["filtered_out"], data["candles_without_symbol"]) == (2, 1, 3)
    # What the old guides' scripts read, as copies under the old names.
    assert (data["SymbolsAdded"], data["MarketDataRecordsWithoutSymbols"], data["Success"]) == (2, 3, True)
    assert data["batch_size"] == 500
    run = PipelineRun.objects.get(pk=data["run_id"])
    assert (run.steps_requested, run.options["batch_size"], run.max_seconds) == (["sync"], 500, 300)
    status = staff.get("/api/etl/symbol-sync-status").json()
    assert (status["candles_without_symbol"], status["unsynced_pairs"], status["in_sync"]) == (3, 1, False)
    assert status["symbols"]["by_source"]["discovered"]["total"] == 2


def test_sync_symbols_bad_input_is_400(staff, reference_data):
    r = staff.post("/api/etl/sync-symbols", {"batchSize": 0}, format="json")
    assert r.status_code == 400
    assert "batch_size" in r.json()["errors"]
    r = staff.post("/api/etl/sync-symbols", {"maxProcessingTime": "soon"}, format="json")
    assert r.status_code == 400


def test_sync_symbols_answers_202_with_a_queued_run_and_its_location(
    staff, reference_data, django_capture_on_commit_callbacks
):
    with mock.patch("etl.queue.async_task") as enqueue, django_capture_on_commit_callbacks() as callbacks:
        r = staff.post("/api/etl/sync-symbols", {"venueFilter": ["BIST"]}, format="json")
        assert not enqueue.called  # nothing reaches the workers before the commit
    for callback in callbacks:
        callback()
    assert r.status_code == 202
    run = PipelineRun.objects.get(pk=r.json()["run_id"])
    assert enqueue.call_args.args == ("etl.tasks.pipeline_execute", run.pk)
    assert (run.steps_requested, run.options["venues"], run.trigger) == (["sync"], ["BIST"], "api")
    assert r["Location"] == f"http://testserver/api/runs/pipeline/{run.pk}/" == r.json()["location"]
    assert staff.get(r["Location"]).json()["status"] == "queued"


def test_sync_run_status_carries_the_old_names_once_done(staff, reference_data, make_candles, settings):
    make_candles([("BTCUSDT", "BINANCE"), ("AAPL", "NASDAQ")])
    with mock.patch("etl.queue.async_task"):
        r = staff.post("/api/etl/sync-symbols", {"batchSize": 500}, format="json")
    services.pipeline_execute(run_id=r.json()["run_id"])
    done = staff.get(r["Location"]).json()
    assert (done["status"], done["Success"], done["SymbolsAdded"], done["MarketDataRecordsWithoutSymbols"]) == (
        "succeeded",
        True,
        2,
        0,
    )


def test_sync_symbols_reads_a_json_body_sent_as_curl_s_default_form(staff, reference_data):
    """The guides' one-liner `curl -X POST .../sync-symbols -d '{"batchSize": 500}'` (no Content-Type)."""
    with mock.patch("etl.queue.async_task"):
        r = staff.post("/api/etl/sync-symbols", '{"batchSize": 500}', content_type="application/x-www-form-urlencoded")
    assert r.status_code == 202, r.content
    assert PipelineRun.objects.get(pk=r.json()["run_id"]).options["batch_size"] == 500
    assert r.json()["batch_size"] == 500


def test_sync_symbols_old_options_we_do_not_act_on_are_listed_and_kept(staff, reference_data):
    with mock.patch("etl.queue.async_task"):
        r = staff.post("/api/etl/sync-symbols", {"batchSize": 1000, "maxConcurrency": 5}, format="json")
    assert r.status_code == 202
    assert list(r.json()["ignored_options"]) == ["maxConcurrency"]
    assert "set-based" in r.json()["ignored_options"]["maxConcurrency"]
    run = PipelineRun.objects.get(pk=r.json()["run_id"])
    assert run.options["ignored_options"] == r.json()["ignored_options"]
    assert staff.get(r["Location"]).json()["ignored_options"] == r.json()["ignored_options"]


def test_an_unknown_field_is_400_naming_it(staff, reference_data):
    r = staff.post("/api/etl/execute-full-pipeline", {"executeSymbolSinc": True}, format="json")
    assert (r.status_code, r.json()["code"]) == (400, "unknown_field")
    assert list(r.json()["errors"]) == ["executeSymbolSinc"]
    r = staff.post("/api/etl/sync-symbols", {"batchSise": 5}, format="json")
    assert (r.status_code, list(r.json()["errors"])) == (400, ["batchSise"])
    assert not PipelineRun.objects.exists()


def test_pipeline_ignored_option_is_answered_and_kept_on_the_run(staff, reference_data):
    body = {"executeSymbolSync": True, "executeInParallel": False, "runAsync": False, "steps": ["sync"]}
    r = staff.post("/api/etl/execute-full-pipeline", body, format="json")
    assert r.status_code == 200, r.content
    assert list(r.json()["ignored_options"]) == ["executeInParallel"]
    assert "executeInParallel" in PipelineRun.objects.get(pk=r.json()["run_id"]).options["ignored_options"]


def test_execute_full_pipeline_with_old_switches_and_history(staff, etl_steps_only, reference_data, make_candles):
    etl_steps_only.register_step("enrich", order=50, run=lambda *, options, progress=None: {"enriched": 0})
    make_candles([("ETHUSDT", "BINANCE")], asset_class="CRYPTO")
    body = {
        "executeSymbolSync": True,
        "executeAssetEnrichment": True,
        "executeReferenceDataBootstrap": True,
        "validateAfterExecution": True,
        "continueOnComponentFailure": True,
        "maxExecutionTime": "00:04:00",
        "runAsync": False,
    }
    r = staff.post("/api/etl/execute-full-pipeline", body, format="json")
    assert r.status_code == 200, r.content
    data = r.json()
    statuses = {s["name"]: s["status"] for s in data["steps"]}
    assert statuses == {"bootstrap": "succeeded", "sync": "succeeded", "enrich": "succeeded", "validate": "succeeded"}
    run = PipelineRun.objects.get(pk=data["run_id"])
    assert (run.trigger, run.max_seconds, run.continue_on_failure) == ("api", 240, True)
    assert run.requested_by.startswith("user")
    history = staff.get("/api/etl/execution-history?page=1").json()
    assert history["count"] == 1
    assert [s["name"] for s in history["results"][0]["steps"]] == ["bootstrap", "sync", "enrich", "validate"]
    detail = staff.get(f"/api/etl/execution-history/{run.pk}").json()
    assert detail["status"] == data["status"]
    assert staff.get("/api/etl/execution-history?status=failed&pageSize=5&page=1").json()["count"] == 0


def test_execute_full_pipeline_while_one_runs_is_409(staff, reference_data, pipeline_locked):
    r = staff.post("/api/etl/execute-full-pipeline", {"runAsync": False}, format="json")
    assert r.status_code == 409
    assert r.json()["code"] == "pipeline_running"
    assert staff.post("/api/etl/execute-full-pipeline", {}, format="json").status_code == 409
    assert not PipelineRun.objects.exists()


def test_execute_full_pipeline_unknown_step_is_400(staff, reference_data):
    r = staff.post("/api/etl/execute-full-pipeline", {"steps": ["teleport"]}, format="json")
    assert (r.status_code, r.json()["code"]) == (400, "unknown_step")
    r = staff.post("/api/etl/execute-full-pipeline", {"maxExecutionTime": "00:00:00"}, format="json")
    assert r.status_code == 400


def test_execute_full_pipeline_async_returns_202_queued(staff, reference_data, django_capture_on_commit_callbacks):
    with mock.patch("etl.queue.async_task") as enqueue, django_capture_on_commit_callbacks(execute=True):
        r = staff.post("/api/etl/execute-full-pipeline", {"runAsync": True, "steps": ["sync"]}, format="json")
    assert r.status_code == 202
    assert r.json()["status"] == "queued"
    assert enqueue.call_args.args == ("etl.tasks.pipeline_execute", r.json()["id"])
    assert r["Location"].endswith(f"/api/runs/pipeline/{r.json()['id']}/")


def test_an_inline_run_is_bounded_by_the_inline_limit(staff, reference_data):
    r = staff.post("/api/etl/execute-full-pipeline", {"steps": ["sync"], "runAsync": False}, format="json")
    assert PipelineRun.objects.get(pk=r.json()["run_id"]).max_seconds == INLINE_MAX_SECONDS
    r = staff.post("/api/etl/execute-full-pipeline", {"steps": ["sync"], "maxExecutionTime": "99:00:00"}, format="json")
    assert (r.status_code, list(r.json()["errors"])) == (400, ["max_execution_time"])


def test_status_endpoint(staff, reference_data, make_candles):
    make_candles([("EURUSD", "FOREX_MARKET")])
    data = staff.get("/api/etl/status").json()
    assert data["overall"]["candles_without_symbol"] == 3
    assert data["MarketDataRecordsWithoutSymbols"] == 3
    overall = data["overall"]
    assert (data["OverallDataQuality"], data["SymbolCoverage"], data["EnrichmentCoverage"]) == (
        overall["overall_quality"],
        overall["symbol_coverage"],
        overall["enrichment_coverage"],
    )
    assert data["markets"]["FOREX_MARKET"]["symbol_coverage"] == 0.0
    assert {c["name"] for c in data["checks"]} >= {"candles_without_symbol", "overall_quality"}


def test_validate_cleanup_reports_then_fixes(staff, reference_data):
    Symbol.objects.create(ticker=" SISE", market=Market.objects.get(code="BIST"))
    report = staff.post("/api/etl/validate-cleanup-symbols", {}, format="json").json()
    assert report["counts"]["whitespace"] == 1
    assert not DataCorrection.objects.exists()
    fixed = staff.post("/api/etl/validate-cleanup-symbols", {"fix": True, "fixes": ["whitespace"]}, format="json")
    assert fixed.json()["fixed"]["whitespace"] == 1
    assert DataCorrection.objects.get().created_by.startswith("user")
    bad = staff.post("/api/etl/validate-cleanup-symbols", {"fix": True, "fixes": ["nope"]}, format="json")
    assert bad.status_code == 400


def test_schedule_recurring_creates_then_updates(staff, reference_data):
    body = {"cron": "0 2 * * *", "timezone": "Europe/Istanbul", "name": "nightly", "steps": ["sync", "validate"]}
    first = staff.post("/api/etl/schedule-recurring", body, format="json")
    assert first.status_code == 201
    assert first.json()["next_run"].endswith("23:00:00Z")
    second = staff.post("/api/etl/schedule-recurring", {**body, "cron": "0 3 * * *"}, format="json")
    assert second.status_code == 200
    old = staff.post("/api/etl/schedule-recurring", {"cronExpression": "0 4 * * *", "timeZone": "UTC"}, format="json")
    assert (old.status_code, old.json()["cron"], old.json()["timezone"]) == (201, "0 4 * * *", "UTC")
    bad = staff.post("/api/etl/schedule-recurring", {"cron": "every day"}, format="json")
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_cron")
    bad = staff.post("/api/etl/schedule-recurring", {"cron": "0 2 * * *", "timezone": "Nowhere/City"}, format="json")
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_timezone")


def test_queued_run_documents_its_unknown_duration_as_null():
    """Found by schemathesis: a queued run has no duration yet, and the schema must say so."""

    schema = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    for name in ("PipelineRun", "PipelineStepRun"):
        if name in schema:
            assert schema[name]["properties"]["duration_seconds"].get("nullable") is True, name
