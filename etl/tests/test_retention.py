from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Success

from etl import services
from etl.logcontext import RunContextFilter, current_run
from etl.models import DeadLetter, PipelineRun, RunRecord
from etl.progress import ProgressReporter
from etl.services import retention_prune

pytestmark = pytest.mark.django_db


def _task(name: str, age_days: int) -> None:
    stopped = timezone.now() - timedelta(days=age_days)
    Success.objects.create(id=name, name=name, func="etl.tasks.x", started=stopped, stopped=stopped, success=True)


def test_prune_removes_only_what_is_past_its_age():
    _task("old", 100)
    _task("new", 5)
    DeadLetter.objects.create(
        kind="import_file", ref="a.csv", error="gone", resolved_at=timezone.now() - timedelta(days=120)
    )
    open_letter = DeadLetter.objects.create(kind="import_file", ref="b.csv", error="gone")
    DeadLetter.objects.filter(pk=open_letter.pk).update(created_at=timezone.now() - timedelta(days=400))

    result = retention_prune(days=90)

    assert result.deleted["task_results"] == 1
    assert result.deleted["dead_letters_resolved"] == 1
    assert list(Success.objects.values_list("name", flat=True)) == ["new"]
    assert list(DeadLetter.objects.values_list("ref", flat=True)) == ["b.csv"]  # unresolved work is never pruned


def test_prune_command_reports_counts_as_json():
    _task("old", 100)
    out = StringIO()
    call_command("prune_old_data", "--days", "30", "--json", stdout=out)
    summary = json.loads(out.getvalue())
    assert summary["ok"] and summary["days"] == 30 and summary["deleted"]["task_results"] == 1


def test_progress_reporter_puts_its_run_on_every_log_line():

    model = next(m for m in apps.get_models() if issubclass(m, RunRecord))
    run = model.objects.create(status="running")
    before = current_run()
    with ProgressReporter(run, total=10):
        assert current_run() == (model._meta.model_name, str(run.pk))
    assert current_run() == before


def test_pipeline_log_lines_carry_the_pipeline_run(caplog):
    caplog.handler.addFilter(RunContextFilter())
    with caplog.at_level("INFO", logger="etl.pipeline"):
        result = services.pipeline_run(steps=["sync"])
    tagged = [r for r in caplog.records if r.name == "etl.pipeline"]
    assert tagged and all(r.run_id == str(result.run_id) and r.run_type == "pipeline" for r in tagged)
    assert PipelineRun.objects.filter(pk=result.run_id).exists()


def _run(trigger: str, age_days: int, status: str = "succeeded") -> PipelineRun:
    run = PipelineRun.objects.create(trigger=trigger, status=status)
    PipelineRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(days=age_days))
    run.step_runs.create(name="sync", order=30, status=status)
    return run


def test_old_pipeline_runs_are_pruned_but_the_latest_of_each_trigger_and_open_ones_stay():
    gone = _run("api", 40)
    latest_api = _run("api", 35)
    only_schedule = _run("schedule", 60)
    still_running = _run("command", 50, status="running")
    recent = _run("command", 2)
    result = retention_prune(days=30)
    assert result.deleted["pipeline_runs"] == 2  # the run and its step
    assert set(PipelineRun.objects.values_list("pk", flat=True)) == {
        latest_api.pk,
        only_schedule.pk,
        still_running.pk,
        recent.pk,
    }
    assert not PipelineRun.objects.filter(pk=gone.pk).exists()


def test_the_default_window_is_thirty_days(settings):
    assert settings.RETENTION_DAYS == 30
    assert retention_prune().days == 30
