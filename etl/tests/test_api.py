from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django_q.conf import Conf
from rest_framework.exceptions import ValidationError
from rest_framework.test import APIRequestFactory

from etl import services
from etl.api.exceptions import exception_handler
from etl.errors import ConflictError, DomainError
from etl.models import DataProvider, Market, MarketData, PipelineRun
from etl.timeparse import moment_parse

pytestmark = pytest.mark.django_db

BOOTSTRAP = "/api/etl/bootstrap-reference-data"


@pytest.fixture
def reference():
    services.reference_data_bootstrap()


def test_bootstrap_endpoint_needs_staff_with_permission(api_anon, api_client_for):
    assert api_anon.post(BOOTSTRAP, {}, format="json").status_code == 401
    assert api_client_for().post(BOOTSTRAP, {}, format="json").status_code == 403
    assert api_client_for(staff=True).post(BOOTSTRAP, {}, format="json").status_code == 403
    allowed = api_client_for(staff=True, perms=("etl.bootstrap_reference_data",))
    response = allowed.post(BOOTSTRAP, {"runAsync": False}, format="json")
    assert response.status_code == 200
    assert response.json()["total_created"] == 47
    assert PipelineRun.objects.get(pk=response.json()["run_id"]).steps_requested == ["bootstrap"]
    assert allowed.post(BOOTSTRAP, {"runAsync": False}, format="json").json()["total_created"] == 0


def test_bootstrap_honours_the_old_overwrite_existing_query_parameter(api_client_for):
    client = api_client_for(superuser=True)
    client.post(BOOTSTRAP, {"runAsync": False}, format="json")
    Market.objects.filter(code="BIST").update(name="edited")
    kept = client.post(f"{BOOTSTRAP}?overwriteExisting=false", {"runAsync": False}, format="json")
    assert (kept.status_code, Market.objects.get(code="BIST").name) == (200, "edited")
    client.post(f"{BOOTSTRAP}?overwriteExisting=true", {"runAsync": False}, format="json")
    assert Market.objects.get(code="BIST").name != "edited"
    bad = client.post(f"{BOOTSTRAP}?overwriteExistng=true", {"runAsync": False}, format="json")
    assert (bad.status_code, bad.json()["code"]) == (400, "unknown_field")


def test_bootstrap_endpoint_rejects_bad_input_with_400(api_client_for):
    client = api_client_for(superuser=True)
    response = client.post(BOOTSTRAP, {"overwrite": "perhaps"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert body["errors"]["overwrite"] == ["Must be a valid boolean."]
    assert body["detail"] == "Invalid input: overwrite: Must be a valid boolean."


def test_bootstrap_is_queued_by_default_as_a_pipeline_run(api_client_for, settings):
    client = api_client_for(superuser=True)
    response = client.post(BOOTSTRAP, {}, format="json")
    assert response.status_code == 202
    run = PipelineRun.objects.get(pk=response.json()["run_id"])
    assert (run.steps_requested, run.options) == (["bootstrap"], {"overwrite": False})
    assert response["Location"].endswith(f"/api/runs/pipeline/{run.pk}/")


def test_bootstrap_status_and_validation(api_anon, api_client_for, reference):
    assert api_anon.get("/api/etl/bootstrap-status").status_code == 401
    status = api_client_for().get("/api/etl/bootstrap-status").json()
    assert status["complete"] is True
    assert status["tables"]["markets"] == {"count": 5, "expected": 5, "missing": []}

    Market.objects.filter(code="NYSE").first().sessions.all().delete()
    assert api_client_for().post("/api/etl/validate-reference-data").status_code == 403
    report = api_client_for(staff=True, perms=("etl.view_market",)).post("/api/etl/validate-reference-data").json()
    assert report["ok"] is False
    assert [p["code"] for p in report["problems"]] == ["market_without_session"]


def test_validation_reports_enabled_provider_without_key(reference, settings):
    DataProvider.objects.filter(code="POLYGON").update(is_enabled=True)
    settings.PROVIDER_API_KEYS = {**settings.PROVIDER_API_KEYS, "POLYGON": ""}
    problems = services.reference_data_validate().problems
    assert [p.code for p in problems] == ["provider_without_key"]
    settings.PROVIDER_API_KEYS = {**settings.PROVIDER_API_KEYS, "POLYGON": "secret"}
    assert services.reference_data_validate().ok


def test_health_is_public_and_reports_database_and_queue(api_anon):
    response = api_anon.get("/api/etl/health")
    assert response.status_code == 200
    body = response.json()
    assert body["checks"]["database"]["ok"] and body["checks"]["queue"]["ok"]


def test_health_is_503_when_the_queue_broker_is_down(api_anon, monkeypatch):
    # The outside world: a Redis broker nobody listens on.
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "BROKER_CLASS", None)  # as settings has it with Redis
    monkeypatch.setattr(Conf, "REDIS", "redis://127.0.0.1:9/0")
    response = api_anon.get("/api/etl/health")
    assert response.status_code == 503
    assert response.json()["checks"]["queue"]["ok"] is False


def test_reference_lists_need_authentication(api_anon, api_client_for, reference):
    client = api_client_for()
    for path in ("asset-classes", "markets", "trading-sessions", "data-providers", "symbols", "market-data"):
        assert api_anon.get(f"/api/{path}/").status_code == 401
        assert client.get(f"/api/{path}/").status_code == 200
    providers = client.get("/api/data-providers/").json()["results"]
    assert "api_key" not in providers[0] and "has_api_key" in providers[0]


def test_market_data_filters_and_cursor_pagination(api_client_for):
    start = datetime(2024, 1, 1, tzinfo=UTC)
    MarketData.objects.bulk_create(
        MarketData(
            ticker=ticker,
            market="NASDAQ",
            timeframe="1d",
            ts=start + timedelta(days=i),
            open=Decimal(1),
            high=Decimal(2),
            low=Decimal("0.5"),
            close=Decimal("1.5"),
            volume=Decimal(10),
        )
        for ticker in ("AAPL", "MSFT")
        for i in range(30)
    )
    client = api_client_for()
    url = "/api/market-data/?ticker=AAPL&start=2024-01-05T00:00:00Z&end=2024-01-15T00:00:00Z&page_size=4"
    seen = []
    while url:
        page = client.get(url).json()
        seen += [row["ts"] for row in page["results"]]
        url = page["next"]
    assert len(seen) == 10
    assert seen == sorted(seen)
    assert client.get("/api/market-data/?start=not-a-date").status_code == 400


def test_schema_is_valid_openapi3(api_anon, api_client_for):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")
    assert api_anon.get("/api/schema/").status_code == 401
    schema = api_client_for().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert schema["openapi"].startswith("3.")
    assert "/api/etl/bootstrap-reference-data" in schema["paths"]


def test_docs_render_from_local_static_files(api_client_for):
    page = api_client_for().get("/api/docs/").content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower()


def test_metrics_endpoint_answers(client):
    client.get("/api/etl/health")
    body = client.get("/metrics").content.decode()
    assert "django_http_requests_total_by_method_total" in body
    assert "django_db_execute_total" in body


def test_domain_errors_render_as_400_and_409_json():

    context = {"request": APIRequestFactory().get("/")}
    bad = exception_handler(DomainError("market 'XX' is unknown", code="unknown_market"), context)
    assert (bad.status_code, bad.data) == (400, {"detail": "market 'XX' is unknown", "code": "unknown_market"})
    clash = exception_handler(ConflictError("already rolled back"), context)
    assert (clash.status_code, clash.data["code"]) == (409, "conflict")


def test_bootstrap_run_runs_on_the_queue_and_its_status_is_at_its_location(
    monkeypatch, api_client_for, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(Conf, "SYNC", True)  # the cluster runs it in-process
    client = api_client_for(superuser=True)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(BOOTSTRAP, {"run_async": True}, format="json")
    assert response.status_code == 202
    done = client.get(response["Location"]).json()
    assert done["status"] == "succeeded"
    assert done["steps"][0]["counts"]["total_created"] == 47
    assert Market.objects.count() == 5


@pytest.mark.parametrize(("redis_url", "broker_key"), [("", "orm"), ("redis://127.0.0.1:6389/9", "redis")])
def test_queue_broker_follows_redis_url(redis_url, broker_key):
    env = {**os.environ, "REDIS_URL": redis_url, "DEBUG": "on"}
    code = "import json; from mytrader import settings as s; print(json.dumps(sorted(s.Q_CLUSTER)))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    keys = json.loads(out.stdout)
    assert broker_key in keys
    assert ({"orm", "redis"} - {broker_key}).isdisjoint(keys)


def test_validation_errors_are_flattened_to_field_paths():
    """Found by schemathesis: nested and plain-string errors broke the documented shape."""

    context = {"request": APIRequestFactory().get("/")}
    exc = ValidationError({"steps": {"0": ["too long"]}, "max_minutes": "must be positive", "x": [{"y": ["bad"]}]})
    body = exception_handler(exc, context).data
    assert body["errors"] == {"steps.0": ["too long"], "max_minutes": ["must be positive"], "x.0.y": ["bad"]}
    assert body["code"] == "invalid"


def test_a_moment_with_an_odd_offset_or_at_the_calendars_edge_is_not_a_database_error(api_client_for):
    # Schemathesis over HTTP found a 500 (DataError): PostgreSQL refuses the offset +22:22.
    client = api_client_for()
    assert client.get("/api/market-data/?end=7365-09-15T19:47:11.1%2B22:22").status_code == 200
    edge = client.get("/api/market-data/?end=9999-12-31T23:00:00-05:00")
    assert edge.status_code == 400 and "end" in edge.json()["errors"]
    assert moment_parse("2024-01-05T10:00:00+22:22", field="from") == datetime(2024, 1, 4, 11, 38, tzinfo=UTC)
    with pytest.raises(DomainError, match="out of range"):
        moment_parse("9999-12-31T23:00:00-05:00", field="to")
