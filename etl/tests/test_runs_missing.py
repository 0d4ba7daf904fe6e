"""Actions on a run that does not exist answer 404 in the one error shape, for every run type."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

ACTIONS = [
    "/api/runs/pipeline/0/cancel/",
    "/api/runs/pipeline/0/retry/",
    "/api/runs/import-jobs/0/cancel/",
    "/api/runs/import-jobs/0/retry/",
    "/api/runs/corrections/0/cancel/",
    "/api/runs/corrections/0/retry/",
    "/api/runs/corrections/0/rollback/",
    "/api/runs/asset-enrichment/0/cancel/",
    "/api/runs/asset-enrichment/0/retry/",
    "/api/runs/features/0/cancel/",
    "/api/runs/features/0/retry/",
    "/api/runs/backfills/0/retry/",
]


@pytest.mark.parametrize("url", ACTIONS)
def test_an_action_on_a_missing_run_is_a_404(api_client_for, url):
    body = {"reason": "operator asked"} if url.endswith("rollback/") else {}
    response = api_client_for(superuser=True).post(url, body, format="json")
    assert response.status_code == 404, response.content
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("url", ACTIONS)
def test_options_on_a_run_action_answers_without_error(api_client_for, url):
    response = api_client_for(superuser=True).options(url)
    assert response.status_code in (200, 404), response.content
