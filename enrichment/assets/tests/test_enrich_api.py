"""API input bounds and response shapes found by the schemathesis run."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

PERM = ("enrichment.run_enrichment",)


def test_enrichment_status_refuses_an_absurd_staleness_with_400(api_client_for):
    # 7 trillion days overflowed the date arithmetic: a 500 before the fix.
    response = api_client_for().get("/api/etl/enrichment-status?stale_days=7469221880764")
    assert response.status_code == 400
    assert "stale_days" in response.json()["errors"]


def test_enrichment_status_refuses_a_non_number_with_400(api_client_for):
    response = api_client_for().get("/api/etl/enrichment-status?stale_days=soon")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_queued_run_documents_its_unknown_progress_as_null(api_client_for):
    from drf_spectacular.generators import SchemaGenerator

    client = api_client_for(staff=True, perms=PERM)
    run = client.post("/api/etl/enrich-assets", {"run_async": True}, format="json")
    assert run.status_code == 202
    assert run.json()["percent"] is None and run.json()["eta_seconds"] is None
    schema = SchemaGenerator().get_schema(request=None, public=True)
    props = schema["components"]["schemas"]["Run"]["properties"]
    assert props["percent"].get("nullable") is True
    assert props["eta_seconds"].get("nullable") is True


def test_enrich_assets_refuses_a_body_that_is_not_an_object(api_client_for):
    # A JSON array crashed the option parsing: a 500 before the fix.
    response = api_client_for(staff=True, perms=PERM).post("/api/etl/enrich-assets", [None, None], format="json")
    assert response.status_code == 400
    assert "Expected a dictionary, but got list." in response.json()["detail"]


def test_old_fetch_log_rows_are_pruned():
    from datetime import timedelta

    from django.utils import timezone

    from enrichment.models import FetchLog
    from etl.services import retention_prune

    old = FetchLog.objects.create(provider="BINANCE", endpoint="klines", attempt=1, outcome="ok", duration_ms=5)
    FetchLog.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=100))
    FetchLog.objects.create(provider="BINANCE", endpoint="klines", attempt=1, outcome="ok", duration_ms=5)
    assert retention_prune(days=90).deleted["enrichment_fetch_log"] == 1
    assert FetchLog.objects.count() == 1
