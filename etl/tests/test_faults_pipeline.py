"""Concurrency of the pipeline's queue: many identical requests at once start one run,
the others are refused naming it, and no refused request leaves a run `queued`."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_q.models import OrmQ

from etl import services
from etl.errors import ConflictError
from etl.models import PipelineRun, RunStatus

RUN = ("etl.run_pipeline",)


def _post_at_once(client, url: str, body: dict, times: int = 20) -> list[tuple[int, dict]]:
    barrier = threading.Barrier(times)
    answers: list[tuple[int, dict]] = []

    def post() -> None:
        try:
            barrier.wait()
            response = client.post(url, body, format="json")
            answers.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_execute_full_pipeline_posts_queue_exactly_one_run(reference_data, api_client_for):
    client = api_client_for(staff=True, perms=RUN)
    answers = _post_at_once(client, "/api/etl/execute-full-pipeline", {"steps": ["sync"], "runAsync": True})

    assert sorted(code for code, _ in answers) == [202] + [409] * 19
    queued_id = next(body["run_id"] for code, body in answers if code == 202)
    assert all(f"pipeline run #{queued_id} " in body["detail"] for code, body in answers if code == 409)
    assert list(PipelineRun.objects.values_list("pk", "status")) == [(queued_id, RunStatus.QUEUED)]
    assert OrmQ.objects.count() == 1


@pytest.mark.django_db
def test_a_queued_run_refuses_a_second_queue_naming_it(reference_data):
    first = services.pipeline_queue(steps=["sync"])
    with pytest.raises(ConflictError, match=f"pipeline run #{first.pk} is queued"):
        services.pipeline_queue(steps=["sync"])
    assert PipelineRun.objects.count() == 1


@pytest.mark.django_db
def test_a_queued_run_older_than_q_retry_lost_its_task_and_blocks_nothing(reference_data, settings):
    lost = services.pipeline_queue(steps=["sync"])
    retry = settings.Q_CLUSTER.get("retry", 3900)
    PipelineRun.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(seconds=retry + 1))
    assert services.pipeline_queue(steps=["sync"]).pk != lost.pk


@pytest.mark.django_db
def test_a_queued_run_an_operator_cancelled_does_not_block_a_new_one(reference_data):
    cancelled = services.pipeline_queue(steps=["sync"])
    assert services.pipeline_cancel(run=cancelled)
    assert services.pipeline_queue(steps=["sync"]).pk != cancelled.pk
