"""Who may call which API endpoint, for every endpoint the project serves.

The matrix must name every endpoint: a new endpoint without an entry fails
`test_matrix_names_every_endpoint`, so nobody ships one without deciding who
may call it.
"""

from __future__ import annotations

import re

import pytest
from drf_spectacular.generators import EndpointEnumerator

pytestmark = pytest.mark.django_db

PUBLIC = "public"  # no authentication
AUTH = "authenticated"  # any logged-in user
# Staff; the permission depends on the object (running a schedule needs the permission of what it
# runs: etl.services.schedules.schedule_run_permission, tested in etl/tests/test_schedule_doors.py).
BY_OBJECT = "staff, with the permission of the object"
# Otherwise: "app.codename", the permission a staff user needs.

MATRIX: dict[tuple[str, str], str] = {
    ("GET", "/api/etl/health"): PUBLIC,
    ("POST", "/api/auth/token/"): PUBLIC,  # the login itself
    ("GET", "/api/schema/"): AUTH,
    ("GET", "/api/docs/"): AUTH,
    ("GET", "/api/redoc/"): AUTH,
    ("GET", "/api/asset-classes/"): AUTH,
    ("GET", "/api/asset-classes/{pk}/"): AUTH,
    ("GET", "/api/markets/"): AUTH,
    ("GET", "/api/markets/{pk}/"): AUTH,
    ("GET", "/api/trading-sessions/"): AUTH,
    ("GET", "/api/trading-sessions/{pk}/"): AUTH,
    ("GET", "/api/data-providers/"): AUTH,
    ("GET", "/api/data-providers/{pk}/"): AUTH,
    ("GET", "/api/symbols/"): AUTH,
    ("GET", "/api/symbols/{pk}/"): AUTH,
    ("GET", "/api/market-data/"): AUTH,
    ("GET", "/api/market-data/{pk}/"): AUTH,
    ("GET", "/api/etl/bootstrap-status"): AUTH,
    ("POST", "/api/etl/bootstrap-reference-data"): "etl.bootstrap_reference_data",
    ("POST", "/api/etl/validate-reference-data"): "etl.view_market",
    # symbol sync and the pipeline
    ("POST", "/api/etl/execute-full-pipeline"): "etl.run_pipeline",
    ("POST", "/api/etl/sync-symbols"): "etl.sync_symbols",
    ("GET", "/api/etl/status"): AUTH,
    ("GET", "/api/etl/symbol-sync-status"): AUTH,
    ("GET", "/api/etl/execution-history"): AUTH,
    ("GET", "/api/etl/execution-history/{pk}"): AUTH,
    ("POST", "/api/etl/validate-cleanup-symbols"): "etl.clean_symbols",
    ("POST", "/api/etl/schedule-recurring"): "etl.schedule_pipeline",
    # runs as resources
    ("GET", "/api/runs/pipeline/"): AUTH,
    ("GET", "/api/runs/pipeline/{pk}/"): AUTH,
    ("POST", "/api/runs/pipeline/{pk}/cancel/"): "etl.run_pipeline",
    ("POST", "/api/runs/pipeline/{pk}/retry/"): "etl.run_pipeline",
    ("GET", "/api/runs/summary-recounts/"): AUTH,
    ("POST", "/api/runs/summary-recounts/"): "etl.recount_summaries",
    ("GET", "/api/runs/summary-recounts/{pk}/"): AUTH,
    ("POST", "/api/runs/summary-recounts/{pk}/cancel/"): "etl.recount_summaries",
    ("POST", "/api/runs/summary-recounts/{pk}/retry/"): "etl.recount_summaries",
    ("GET", "/api/runs/import-jobs/"): AUTH,
    ("GET", "/api/runs/import-jobs/{pk}/"): AUTH,
    ("POST", "/api/runs/import-jobs/{pk}/cancel/"): "batchimport.cancel_import",
    ("POST", "/api/runs/import-jobs/{pk}/retry/"): "batchimport.retry_import",
    ("GET", "/api/runs/corrections/"): AUTH,
    ("GET", "/api/runs/corrections/{pk}/"): AUTH,
    ("POST", "/api/runs/corrections/{pk}/cancel/"): "corrections.execute_correction",
    ("POST", "/api/runs/corrections/{pk}/retry/"): "corrections.execute_correction",
    ("POST", "/api/runs/corrections/{pk}/rollback/"): "corrections.rollback_correction",
    ("GET", "/api/runs/asset-enrichment/"): AUTH,
    ("GET", "/api/runs/asset-enrichment/{pk}/"): AUTH,
    ("POST", "/api/runs/asset-enrichment/{pk}/cancel/"): "enrichment.run_enrichment",
    ("POST", "/api/runs/asset-enrichment/{pk}/retry/"): "enrichment.run_enrichment",
    ("GET", "/api/runs/features/"): AUTH,
    ("GET", "/api/runs/features/{pk}/"): AUTH,
    ("POST", "/api/runs/features/{pk}/cancel/"): "enrichment.compute_features",
    ("POST", "/api/runs/features/{pk}/retry/"): "enrichment.compute_features",
    ("GET", "/api/runs/backfills/"): AUTH,
    ("GET", "/api/runs/backfills/{pk}/"): AUTH,
    ("POST", "/api/runs/backfills/"): "enrichment.run_backfill",
    ("POST", "/api/runs/backfills/{pk}/retry/"): "enrichment.run_backfill",
    ("POST", "/api/runs/backfills/{pk}/cancel/"): "enrichment.run_backfill",
    # enrichment: provider side
    ("POST", "/api/etl/enrich-assets"): "enrichment.run_enrichment",
    ("GET", "/api/etl/enrichment-status"): AUTH,
    ("GET", "/api/etl/enrichment-runs/{pk}"): AUTH,
    ("GET", "/api/etl/enrichment-sources-status"): AUTH,
    ("GET", "/api/etl/enrichment-dead-letters"): AUTH,
    ("POST", "/api/etl/enrichment-dead-letters/resubmit"): "enrichment.run_enrichment",
    ("POST", "/api/etl/discover-symbols"): "enrichment.run_enrichment",
    ("POST", "/api/etl/symbol-mappings/{pk}/validate"): "enrichment.run_enrichment",
    # batch import
    ("POST", "/api/batch-processing/markets/{market}/import"): "batchimport.start_import",
    ("POST", "/api/batch-processing/all-markets/import"): "batchimport.start_import",
    ("GET", "/api/batch-processing/jobs/{job_id}/status"): AUTH,
    ("POST", "/api/batch-processing/jobs/{job_id}/cancel"): "batchimport.cancel_import",
    ("POST", "/api/batch-processing/jobs/{job_id}/retry"): "batchimport.retry_import",
    ("GET", "/api/batch-processing/monitoring/stats"): AUTH,
    ("GET", "/api/batch-processing/dead-letter-queue"): AUTH,
    ("POST", "/api/batch-processing/dead-letter-queue/{letter_id}/resubmit"): "batchimport.retry_import",
    ("GET", "/api/batch-processing/health"): PUBLIC,
    ("POST", "/api/batch-processing/schedules/all-markets"): "batchimport.schedule_import",
    ("GET", "/api/batch-processing/schedules/{schedule_id}"): AUTH,
    ("DELETE", "/api/batch-processing/schedules/{schedule_id}"): "batchimport.schedule_import",
    ("POST", "/api/schedules/{schedule_id}/run-now"): BY_OBJECT,
    # corrections
    ("GET", "/api/etl/asset-class-correction/analyze"): AUTH,
    ("POST", "/api/etl/asset-class-correction/preview"): "corrections.view_correctionrun",
    ("POST", "/api/etl/asset-class-correction/execute"): "corrections.execute_correction",
    ("POST", "/api/etl/asset-class-correction/validate"): "corrections.execute_correction",
    ("GET", "/api/etl/asset-class-correction/status"): AUTH,
    ("POST", "/api/etl/asset-class-correction/cancel"): "corrections.execute_correction",
    ("POST", "/api/etl/asset-class-correction/rollback"): "corrections.rollback_correction",
    ("GET", "/api/etl/asset-class-correction/health"): PUBLIC,
    ("GET", "/api/etl/asset-class-correction/metrics"): AUTH,
    # enrichment: candle side
    ("GET", "/api/v1/enrichment/status/{symbol}"): AUTH,
    ("GET", "/api/v1/enrichment/metrics"): AUTH,
    ("GET", "/api/v1/enrichment/freshness/{symbol}"): AUTH,
    ("POST", "/api/v1/enrichment/trigger"): "enrichment.compute_features",
    ("GET", "/api/v1/data/quality/{symbol}"): AUTH,
    ("GET", "/api/v1/market/features/{symbol}/{timeframe}"): AUTH,
}


def endpoints() -> list[tuple[str, str]]:
    return sorted((method, path) for path, _regex, method, _view in EndpointEnumerator().get_api_endpoints())


def concrete(path: str) -> str:
    """A callable URL for a path template: ids that do not exist, codes that do."""
    return re.sub(r"\{[^}]+\}", lambda m: "999999" if m.group(0).endswith(("pk}", "id}")) else "XNOPE", path)


def call(client, method: str, path: str):
    return (
        getattr(client, method.lower())(concrete(path), {}, format="json")
        if method != "GET"
        else client.get(concrete(path))
    )


def test_matrix_names_every_endpoint():
    served = set(endpoints())
    missing = sorted(served - MATRIX.keys())
    stale = sorted(MATRIX.keys() - served)
    assert not missing, f"endpoints without a permission entry: {missing}"
    assert not stale, f"matrix entries for endpoints that no longer exist: {stale}"


@pytest.mark.parametrize(("method", "path"), sorted(MATRIX))
def test_permission_matrix(method, path, api_anon, api_client_for):
    rule = MATRIX[(method, path)]
    denied = {401, 403}

    anon = call(api_anon, method, path).status_code
    if rule == PUBLIC:
        assert anon not in denied
        return
    assert anon == 401, f"anonymous {method} {path} -> {anon}"

    user = call(api_client_for(), method, path).status_code
    if rule == BY_OBJECT:  # no such object here: staff learn that, others are refused first
        assert user == 403, f"non-staff {method} {path} -> {user}"
        assert call(api_client_for(staff=True), method, path).status_code == 404
        return
    if rule == AUTH:
        assert user not in denied, f"user {method} {path} -> {user}"
        return
    assert user == 403, f"non-staff {method} {path} -> {user}"
    assert call(api_client_for(perms=(rule,)), method, path).status_code == 403, "non-staff with the permission"
    assert call(api_client_for(staff=True), method, path).status_code == 403, "staff without the permission"
    allowed = call(api_client_for(staff=True, perms=(rule,)), method, path).status_code
    assert allowed not in denied, f"staff with {rule}: {method} {path} -> {allowed}"
    assert call(api_client_for(superuser=True), method, path).status_code not in denied
