from __future__ import annotations

import pytest
from django_q.conf import Conf

from corrections import services
from corrections.models import CorrectionRun, Phase
from corrections.tests.conftest import market_data_checksum
from etl.models import MarketData

pytestmark = pytest.mark.django_db

BASE = "/api/etl/asset-class-correction"
EXECUTE = ("corrections.execute_correction",)
ROLLBACK = ("corrections.rollback_correction",)
VIEW = ("corrections.view_correctionrun",)


def executed_run(**options) -> CorrectionRun:
    run = services.correction_run_create(requested_by="alice", **options)
    services.correction_execute(run=run)
    return run


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "analyze"),
        ("post", "preview"),
        ("post", "execute"),
        ("post", "validate"),
        ("get", "status"),
        ("post", "cancel"),
        ("post", "rollback"),
        ("get", "metrics"),
    ],
)
def test_anonymous_is_refused(api_anon, world, method, path):
    response = getattr(api_anon, method)(f"{BASE}/{path}", {}, format="json")
    assert response.status_code in (401, 403)


@pytest.mark.parametrize("path", ["preview", "execute", "validate", "cancel", "rollback"])
def test_authenticated_non_staff_cannot_write(api_client_for, world, path):
    client = api_client_for(perms=EXECUTE + ROLLBACK + VIEW)
    assert client.post(f"{BASE}/{path}", {}, format="json").status_code == 403


def test_staff_without_the_permission_cannot_execute(api_client_for, world):
    client = api_client_for(staff=True, perms=VIEW)
    assert client.post(f"{BASE}/execute", {"run_async": False}, format="json").status_code == 403
    assert MarketData.objects.filter(asset_class="STOCK_BIST").count() == 0


def test_analyze_for_any_authenticated_user(api_client_for, world):
    response = api_client_for().get(f"{BASE}/analyze", {"sample_size": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["totals"]["needing_correction"] == 75 and len(body["samples"]["null"]) == 2


def test_analyze_rejects_a_bad_sample_size(api_client_for, world):
    response = api_client_for().get(f"{BASE}/analyze", {"sample_size": "lots"})
    assert response.status_code == 400 and "sample_size" in response.json()["errors"]


def test_preview_with_old_system_option_names_writes_nothing(api_client_for, world):
    before = market_data_checksum()
    client = api_client_for(staff=True, perms=VIEW)
    response = client.post(f"{BASE}/preview", {"onlyProcessNullAssetClass": True, "pageSize": 1}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["scope"], body["total_rows"], body["total_groups"], len(body["groups"])) == ("null", 28, 2, 1)
    assert market_data_checksum() == before and CorrectionRun.objects.count() == 0


def test_preview_of_a_run_records_it(api_client_for, world):
    run = services.correction_run_create(requested_by="alice", overwrite_mismatched=True)
    response = api_client_for(staff=True, perms=VIEW).post(f"{BASE}/preview", {"run_id": run.pk}, format="json")
    assert response.status_code == 200 and response.json()["total_rows"] == 75
    run.refresh_from_db()
    assert run.phase == Phase.PREVIEWED


def test_preview_rejects_contradicting_options(api_client_for, world):
    client = api_client_for(staff=True, perms=VIEW)
    response = client.post(f"{BASE}/preview", {"only_null": True, "overwrite_mismatched": True}, format="json")
    assert response.status_code == 400 and "exclude" in str(response.json())


def test_execute_synchronously(api_client_for, world):
    client = api_client_for(staff=True, perms=EXECUTE)
    response = client.post(
        f"{BASE}/execute", {"batchSize": 10, "overwrite_mismatched": True, "run_async": False}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["rows_updated"], body["rows_backed_up"], body["phase"]) == (75, 75, "executed")
    assert CorrectionRun.objects.get(pk=body["run_id"]).requested_by.startswith("user")


def test_execute_queues_on_commit_and_the_worker_runs_it(
    api_client_for, world, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(Conf, "SYNC", True)
    client = api_client_for(staff=True, perms=EXECUTE)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(f"{BASE}/execute", {"overwrite_mismatched": True}, format="json")
    assert response.status_code == 202 and len(callbacks) == 1
    run = CorrectionRun.objects.get(pk=response.json()["run_id"])
    assert run.phase == Phase.EXECUTED and run.rows_updated == 75


def test_execute_refuses_to_run_without_backup(api_client_for, world):
    client = api_client_for(staff=True, perms=EXECUTE)
    response = client.post(f"{BASE}/execute", {"createBackup": False, "run_async": False}, format="json")
    assert response.status_code == 400 and "mandatory" in str(response.json())


def test_execute_of_an_executed_run_is_a_conflict(api_client_for, world):
    run = executed_run()
    client = api_client_for(staff=True, perms=EXECUTE)
    response = client.post(f"{BASE}/execute", {"run_id": run.pk, "run_async": False}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "bad_phase"


def test_execute_of_an_unknown_run_is_a_400(api_client_for, world):
    client = api_client_for(staff=True, perms=EXECUTE)
    response = client.post(f"{BASE}/execute", {"run_id": 999999, "run_async": False}, format="json")
    assert response.status_code == 400 and "run_id" in response.json()["errors"]


def test_validate_latest_executed_run(api_client_for, world):
    run = executed_run()
    response = api_client_for(staff=True, perms=EXECUTE).post(f"{BASE}/validate", {}, format="json")
    assert response.status_code == 200 and response.json()["ok"] is True and response.json()["run_id"] == run.pk


def test_status_reports_progress(api_client_for, world):
    run = executed_run(batch_size=10)
    response = api_client_for().get(f"{BASE}/status", {"run_id": run.pk})
    body = response.json()
    assert response.status_code == 200
    assert (body["phase"], body["percent"], body["rows_updated"], body["interrupted"]) == ("executed", 100.0, 35, False)


def test_status_without_runs_is_404(api_client_for, world):
    response = api_client_for().get(f"{BASE}/status")
    assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_cancel_an_idle_run_is_a_conflict(api_client_for, world):
    run = services.correction_run_create(requested_by="alice")
    response = api_client_for(staff=True, perms=EXECUTE).post(f"{BASE}/cancel", {"run_id": run.pk}, format="json")
    assert response.status_code == 409


def test_rollback_then_second_rollback_is_409(api_client_for, world):
    before = market_data_checksum()
    run = executed_run(overwrite_mismatched=True)
    client = api_client_for(staff=True, perms=ROLLBACK)
    body = {"correctionId": str(run.pk), "reason": "bad data", "runAsync": False}
    response = client.post(f"{BASE}/rollback", body, format="json")
    assert response.status_code == 200 and response.json()["rows_restored"] == 75
    assert market_data_checksum() == before
    again = client.post(f"{BASE}/rollback", {"run_id": run.pk, "reason": "again"}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "already_rolled_back"


def test_rollback_is_queued_by_default_and_its_status_is_at_its_location(
    api_client_for, world, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(Conf, "SYNC", True)  # the cluster runs it in-process
    before = market_data_checksum()
    run = executed_run(overwrite_mismatched=True)
    client = api_client_for(staff=True, perms=ROLLBACK)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"{BASE}/rollback", {"correctionId": f"correction:{run.pk}", "reason": "x"}, format="json"
        )
    assert response.status_code == 202
    assert response["Location"].endswith(f"/api/runs/corrections/{run.pk}/")
    assert client.get(response["Location"]).json()["phase"] == Phase.ROLLED_BACK
    assert market_data_checksum() == before
    again = client.post(f"{BASE}/rollback", {"run_id": run.pk, "reason": "again"}, format="json")
    assert again.status_code == 409  # refused before anything is queued


def test_correction_requests_follow_the_policy(api_client_for, world):
    client = api_client_for(staff=True, perms=EXECUTE)
    bad = client.post(f"{BASE}/execute", {"batchSize": 10, "onlyNullAsetClass": True}, format="json")
    assert (bad.status_code, bad.json()["code"], list(bad.json()["errors"])) == (
        400,
        "unknown_field",
        ["onlyNullAsetClass"],
    )
    twice = client.post(f"{BASE}/execute", {"batchSize": 10, "batch_size": 20}, format="json")
    assert twice.json()["code"] == "given_twice"
    assert not CorrectionRun.objects.exists()
    assert client.get(f"{BASE}/status?runId=abc").status_code == 400


def test_correction_runs_resource_lists_retrieves_and_acts(api_client_for, world, django_capture_on_commit_callbacks):
    done = executed_run(overwrite_mismatched=True)
    fresh = services.correction_run_create(requested_by="bob")
    reader = api_client_for()
    listed = reader.get("/api/runs/corrections/").json()["results"]
    assert [r["run_id"] for r in listed] == [fresh.pk, done.pk]
    assert [r["run_id"] for r in reader.get("/api/runs/corrections/?kind=executed").json()["results"]] == [done.pk]
    assert [r["run_id"] for r in reader.get("/api/runs/corrections/?requested_by=bob").json()["results"]] == [fresh.pk]
    assert reader.get(f"/api/runs/corrections/{done.pk}/").json()["rows_updated"] == 75
    assert reader.post(f"/api/runs/corrections/{fresh.pk}/retry/").status_code == 403
    with django_capture_on_commit_callbacks():
        retried = api_client_for(staff=True, perms=EXECUTE).post(f"/api/runs/corrections/{fresh.pk}/retry/")
    assert (retried.status_code, retried.json()["status"]) == (202, "queued")
    roller = api_client_for(staff=True, perms=ROLLBACK)
    assert roller.post(f"/api/runs/corrections/{done.pk}/rollback/", {}, format="json").status_code == 400
    with django_capture_on_commit_callbacks():
        rolled = roller.post(f"/api/runs/corrections/{done.pk}/rollback/", {"reason": "undo"}, format="json")
    assert rolled.status_code == 202


def test_rollback_needs_a_reason(api_client_for, world):
    run = executed_run()
    client = api_client_for(staff=True, perms=ROLLBACK)
    response = client.post(f"{BASE}/rollback", {"run_id": run.pk}, format="json")
    assert response.status_code == 400 and "reason" in response.json()["errors"]


def test_rollback_with_conflicts_reports_them(api_client_for, world):
    run = executed_run(overwrite_mismatched=True)
    MarketData.objects.filter(ticker="THYAO").update(asset_class="ETF")
    client = api_client_for(staff=True, perms=ROLLBACK)
    body = {"run_id": run.pk, "reason": "undo", "run_async": False}
    body = client.post(f"{BASE}/rollback", body, format="json").json()
    assert (body["conflicts"], body["conflicts_restored"], body["rows_restored"]) == (30, 0, 45)
    assert len(body["conflict_samples"]) == 30


def test_health_needs_no_login_and_flags_interrupted_runs(api_anon, world):
    assert api_anon.get(f"{BASE}/health").json()["status"] == "healthy"
    run = services.correction_run_create(requested_by="alice")
    CorrectionRun.objects.filter(pk=run.pk).update(phase=Phase.EXECUTING, status="running")
    body = api_anon.get(f"{BASE}/health").json()
    assert body["status"] == "degraded" and body["checks"]["interrupted_runs"]["runs"] == [run.pk]


def test_metrics_endpoint_and_prometheus_export(api_client_for, client, world):
    executed_run(overwrite_mismatched=True)
    body = api_client_for().get(f"{BASE}/metrics").json()
    assert body["records_needing_correction"] == 0 and body["rows_updated_total"] == 75
    assert body["data_quality_score"] == 90.0
    text = client.get("/metrics").content.decode()
    for name in (
        "assetclass_operations_started_total",
        "assetclass_operations_completed_total",
        "assetclass_records_processed_total",
        "assetclass_operation_duration_seconds_bucket",
        "assetclass_data_quality_score 90.0",
        "assetclass_records_needing_correction 0.0",
    ):
        assert name in text, name
    assert 'assetclass_records_processed_total{operation="execute"}' in text


def test_schema_lists_the_endpoints(api_client_for):
    schema = api_client_for().get("/api/schema/", {"format": "json"}).json()
    assert f"/api/{BASE.removeprefix('/api/')}/rollback" in schema["paths"]


def test_an_interrupted_run_can_be_queued_again_but_a_live_one_cannot(api_client_for, world, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", True)
    run = services.correction_run_create(requested_by="alice", overwrite_mismatched=True)
    CorrectionRun.objects.filter(pk=run.pk).update(phase=Phase.EXECUTING, status="running", id_low=0, id_high=-1)
    client = api_client_for(staff=True, perms=EXECUTE)
    with services._exclusive():  # as if its process were still alive
        live = client.post(f"{BASE}/execute", {"run_id": run.pk}, format="json")
    assert live.status_code == 409 and live.json()["code"] == "busy"
    again = client.post(f"{BASE}/execute", {"run_id": run.pk}, format="json")
    assert again.status_code == 202
