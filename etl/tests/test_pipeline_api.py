from __future__ import annotations

from unittest import mock

import pytest
from drf_spectacular.generators import SchemaGenerator

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
    assert response.status_code in (200, 201), response.content


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
    data = staff.post("/api/etl/sync-symbols", {**body, "maxProcessingTime": "01:00:00"}, format="json").json()
    assert (data["symbols_created"], data["filtered_out"], data["candles_without_symbol"]) == (2, 1, 3)
    status = staff.get("/api/etl/symbol-sync-status").json()
    assert (status["candles_without_symbol"], status["unsynced_pairs"], status["in_sync"]) == (3, 1, False)
    assert status["symbols"]["by_source"]["discovered"]["total"] == 2


def test_sync_symbols_bad_input_is_400(staff, reference_data):
    r = staff.post("/api/etl/sync-symbols", {"batchSize": 0}, format="json")
    assert r.status_code == 400
    assert "batch_size" in r.json()["errors"]
    r = staff.post("/api/etl/sync-symbols", {"maxProcessingTime": "soon"}, format="json")
    assert r.status_code == 400


def test_sync_symbols_async_queues_a_task_on_commit(staff, reference_data, django_capture_on_commit_callbacks):
    with mock.patch("etl.queue.async_task") as enqueue, django_capture_on_commit_callbacks() as callbacks:
        r = staff.post("/api/etl/sync-symbols", {"runAsync": True, "venueFilter": ["BIST"]}, format="json")
        assert not enqueue.called  # nothing reaches the workers before the commit
    for callback in callbacks:
        callback()
    assert r.status_code == 202
    assert enqueue.call_args.args == ("etl.tasks.symbols_sync",)
    assert enqueue.call_args.kwargs["venues"] == ["BIST"]
    # The answer's task id is the name the task is queued under (django-q2 finds a task by either).
    assert r.json() == {"task_id": enqueue.call_args.kwargs["task_name"]}


def test_execute_full_pipeline_with_old_switches_and_history(staff, etl_steps_only, reference_data, make_candles):
    etl_steps_only.register_step("enrich", order=50, run=lambda *, options, progress=None: {"enriched": 0})
    make_candles([("ETHUSDT", "BINANCE")], asset_class="CRYPTO")
    body = {
        "executeSymbolSync": True,
        "executeAssetEnrichment": True,
        "executeReferenceDataBootstrap": True,
        "validateAfterExecution": True,
        "continueOnComponentFailure": True,
        "maxExecutionTime": "02:00:00",
    }
    r = staff.post("/api/etl/execute-full-pipeline", body, format="json")
    assert r.status_code == 200, r.content
    data = r.json()
    statuses = {s["name"]: s["status"] for s in data["steps"]}
    assert statuses == {"bootstrap": "succeeded", "sync": "succeeded", "enrich": "succeeded", "validate": "succeeded"}
    run = PipelineRun.objects.get(pk=data["run_id"])
    assert (run.trigger, run.max_seconds, run.continue_on_failure) == ("api", 7200, True)
    assert run.requested_by.startswith("user")
    history = staff.get("/api/etl/execution-history").json()
    assert history["count"] == 1
    assert [s["name"] for s in history["results"][0]["steps"]] == ["bootstrap", "sync", "enrich", "validate"]
    detail = staff.get(f"/api/etl/execution-history/{run.pk}").json()
    assert detail["status"] == data["status"]
    assert staff.get("/api/etl/execution-history?status=failed").json()["count"] == 0


def test_execute_full_pipeline_while_one_runs_is_409(staff, reference_data, pipeline_locked):
    r = staff.post("/api/etl/execute-full-pipeline", {}, format="json")
    assert r.status_code == 409
    assert r.json()["code"] == "pipeline_running"
    assert staff.post("/api/etl/execute-full-pipeline", {"runAsync": True}, format="json").status_code == 409
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


def test_status_endpoint(staff, reference_data, make_candles):
    make_candles([("EURUSD", "FOREX_MARKET")])
    data = staff.get("/api/etl/status").json()
    assert data["overall"]["candles_without_symbol"] == 3
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
