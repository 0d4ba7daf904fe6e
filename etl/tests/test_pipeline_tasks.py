"""The django-q2 doors, run through django-q2 itself in sync mode."""

from __future__ import annotations

import pytest
from django_q.conf import Conf

from etl import services, tasks
from etl.models import MarketData, PipelineRun, RunStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def q_sync(monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", True)


def test_queued_pipeline_runs_through_django_q(
    q_sync, reference_data, make_candles, django_capture_on_commit_callbacks
):
    make_candles([("SOLUSDT", "BINANCE")])
    with django_capture_on_commit_callbacks(execute=True):
        run = services.pipeline_queue(steps=["sync"], requested_by="carol")
    run.refresh_from_db()
    assert (run.status, run.requested_by, run.trigger) == (RunStatus.SUCCEEDED, "carol", "api")
    assert not MarketData.objects.filter(symbol__isnull=True).exists()


def test_symbols_sync_task(reference_data, make_candles):
    make_candles([("AAPL", "NASDAQ"), ("BTCUSDT", "BINANCE")])
    summary = tasks.symbols_sync(venues=["NASDAQ"])
    assert (summary["symbols_created"], summary["filtered_out"]) == (1, 1)
    assert "planned" not in summary


def test_pipeline_execute_task_runs_a_queued_run(reference_data):
    run = PipelineRun.objects.create(steps_requested=["sync", "import"])
    assert tasks.pipeline_execute(run.pk) == RunStatus.SUCCEEDED
    run.refresh_from_db()
    assert run.summary["steps"] == {"import": RunStatus.SKIPPED, "sync": RunStatus.SUCCEEDED}
