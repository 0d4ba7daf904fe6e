"""Pipeline runs as resources: /api/runs/pipeline/ (list, retrieve, cancel, retry)."""

from __future__ import annotations

from unittest import mock

import pytest

from etl.models import PipelineRun, RunStatus

pytestmark = pytest.mark.django_db

RUNS = "/api/runs/pipeline/"


@pytest.fixture
def runs():
    made = [
        PipelineRun.objects.create(trigger="api", requested_by="ayse", status=RunStatus.SUCCEEDED),
        PipelineRun.objects.create(trigger="schedule", requested_by="schedule", status=RunStatus.FAILED),
        PipelineRun.objects.create(
            trigger="api", requested_by="mehmet", status=RunStatus.QUEUED, steps_requested=["sync"]
        ),
    ]
    return made


def test_list_is_newest_first_and_filters(api_client_for, runs):
    client = api_client_for()
    assert [r["id"] for r in client.get(RUNS).json()["results"]] == [r.pk for r in reversed(runs)]
    assert [r["id"] for r in client.get(f"{RUNS}?status=failed").json()["results"]] == [runs[1].pk]
    assert [r["id"] for r in client.get(f"{RUNS}?kind=api&requestedBy=ayse").json()["results"]] == [runs[0].pk]
    later = client.get(f"{RUNS}?created_after={runs[2].created_at.isoformat().replace('+00:00', 'Z')}").json()
    assert [r["id"] for r in later["results"]] == [runs[2].pk]
    paged = client.get(f"{RUNS}?page=2&pageSize=2").json()
    assert (paged["count"], paged["mode"], [r["id"] for r in paged["results"]]) == (3, "page", [runs[0].pk])


def test_list_refuses_unknown_and_out_of_range_parameters(api_client_for, runs):
    client = api_client_for()
    bad = client.get(f"{RUNS}?stauts=failed")
    assert (bad.status_code, bad.json()["code"], list(bad.json()["errors"])) == (400, "unknown_field", ["stauts"])
    assert list(client.get(f"{RUNS}?status=sleeping").json()["errors"]) == ["status"]
    assert list(client.get(f"{RUNS}?pageSize=5000").json()["errors"]) == ["pageSize"]
    assert client.get(f"{RUNS}?created_after=yesterday").status_code == 400


def test_retrieve_has_progress_and_ignored_options(api_client_for, runs):
    runs[2].options = {"ignored_options": {"executeInParallel": "steps depend on each other"}}
    runs[2].save()
    body = api_client_for().get(f"{RUNS}{runs[2].pk}/").json()
    assert body["ignored_options"] == {"executeInParallel": "steps depend on each other"}
    assert {"progress_done", "progress_total", "percent", "eta_seconds", "steps", "error"} <= set(body)
    assert api_client_for().get(f"{RUNS}999999/").status_code == 404


def test_cancel_and_retry_need_the_pipeline_permission_and_call_the_services(api_client_for, runs):
    url = f"{RUNS}{runs[2].pk}/"
    assert api_client_for(staff=True).post(f"{url}cancel/").status_code == 403
    operator = api_client_for(staff=True, perms=("etl.run_pipeline",))
    cancelled = operator.post(f"{url}cancel/")
    assert cancelled.status_code == 200
    assert PipelineRun.objects.get(pk=runs[2].pk).cancel_requested
    with mock.patch("etl.queue.async_task"):
        retried = operator.post(f"{url}retry/")
    assert retried.status_code == 202
    again = PipelineRun.objects.get(pk=retried.json()["run_id"])
    assert (again.steps_requested, again.status, again.trigger) == (["sync"], RunStatus.QUEUED, "api")
    assert retried["Location"].endswith(f"{RUNS}{again.pk}/")
