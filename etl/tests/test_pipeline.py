from __future__ import annotations

import ast
import threading
import time
from datetime import UTC, datetime
from unittest import mock

import pytest
from django.db import connections
from django_q.models import Schedule

from etl import services, tasks
from etl.errors import ConflictError, DomainError
from etl.models import PipelineRun, PipelineStepRun, RunStatus, Symbol
from etl.timeparse import cron_next_run

pytestmark = pytest.mark.django_db


def boom(*, options, progress=None):
    raise RuntimeError("provider down")


def test_default_run_executes_registered_steps_in_order_and_records_them(etl_steps_only, reference_data, make_candles):
    make_candles([("BTCUSDT", "BINANCE")], asset_class="CRYPTO")
    make_candles([("THYAO", "BIST")], asset_class="STOCK_BIST")
    seen = []
    result = services.pipeline_run(requested_by="alice", on_step=lambda sr: seen.append((sr.name, sr.status)))
    assert result.ok, result
    # Nothing is enriched here: the warning gates say so, the error gates hold.
    summary = PipelineRun.objects.get(pk=result.run_id).summary
    assert summary["outcome"] == "succeeded with warnings"
    assert [w.split(" breached")[0] for w in summary["warnings"]] == [
        "validate: quality gate enrichment_coverage",
        "validate: quality gate overall_quality",
    ]
    names = [s.name for s in result.steps]
    assert names.index("sync") < names.index("validate")
    assert "bootstrap" not in names  # not a default step
    assert Symbol.objects.count() == 2
    run = PipelineRun.objects.get(pk=result.run_id)
    assert (run.status, run.requested_by, run.trigger) == (RunStatus.SUCCEEDED, "alice", "command")
    assert run.started_at and run.finished_at and run.finished_at >= run.started_at
    sync = run.step_runs.get(name="sync")
    assert sync.counts["symbols_created"] == 2
    assert sync.started_at and sync.finished_at
    assert run.step_runs.get(name="validate").counts["candles_without_symbol"] == 0
    assert ("sync", RunStatus.RUNNING) in seen and ("sync", RunStatus.SUCCEEDED) in seen


def test_failing_step_with_continue_on_failure_is_in_the_history(registry, reference_data, make_candles):
    registry.register_step("correct", order=40, run=boom)
    make_candles([("BTCUSDT", "BINANCE")], asset_class="CRYPTO")
    result = services.pipeline_run(steps=["sync", "correct", "validate"], continue_on_failure=True)
    assert [(s.name, s.status) for s in result.steps] == [
        ("sync", RunStatus.SUCCEEDED),
        ("correct", RunStatus.FAILED),
        ("validate", RunStatus.SUCCEEDED),
    ]
    assert result.status == RunStatus.FAILED
    assert "step correct failed" in result.error
    step = PipelineStepRun.objects.get(run_id=result.run_id, name="correct")
    assert step.error == "RuntimeError: provider down"
    assert PipelineRun.objects.get(pk=result.run_id).summary["failed"] == ["correct"]


def test_failing_step_without_continue_skips_the_rest(registry, reference_data):
    registry.register_step("correct", order=40, run=boom)
    result = services.pipeline_run(steps=["validate", "correct", "sync"])
    assert [(s.name, s.status) for s in result.steps] == [
        ("sync", RunStatus.SUCCEEDED),
        ("correct", RunStatus.FAILED),
        ("validate", RunStatus.SKIPPED),
    ]
    assert result.steps[2].error == "not run: step correct failed"


def test_unregistered_and_optionless_steps_are_skipped(etl_steps_only, reference_data):
    registry = etl_steps_only
    registry.register_step("import", order=20, run=boom)  # would fail if it ran
    result = services.pipeline_run(steps=["import", "enrich", "sync"])
    by_name = {s.name: s for s in result.steps}
    assert by_name["import"].status == RunStatus.SKIPPED
    assert "path" in by_name["import"].error
    assert by_name["enrich"].status == RunStatus.SKIPPED
    assert "not available" in by_name["enrich"].error
    assert result.ok


def test_step_reporting_skipped_is_recorded_as_skipped(registry, reference_data):
    registry.register_step("features", order=60, run=lambda *, options, progress=None: {"skipped": "nothing new"})
    result = services.pipeline_run(steps=["features"])
    assert (result.steps[0].status, result.steps[0].error) == (RunStatus.SKIPPED, "nothing new")


def test_unknown_step_is_refused_before_anything_runs(reference_data):
    with pytest.raises(DomainError, match="unknown pipeline step"):
        services.pipeline_run(steps=["sync", "teleport"])
    assert not PipelineRun.objects.exists()


def test_max_execution_time_skips_later_steps(registry, reference_data):
    def slow(*, options, progress=None):
        assert options["max_seconds"] <= 1
        time.sleep(1.05)
        return {"slept": 1}

    registry.register_step("correct", order=40, run=slow)
    result = services.pipeline_run(steps=["correct", "validate"], max_seconds=1, continue_on_failure=True)
    assert [s.status for s in result.steps] == [RunStatus.SUCCEEDED, RunStatus.SKIPPED]
    assert "maximum execution time" in result.steps[1].error
    assert result.status == RunStatus.FAILED
    assert PipelineRun.objects.get(pk=result.run_id).summary["timed_out"] is True


def test_cancel_requested_stops_before_the_next_step(registry, reference_data):
    def cancel_me(*, options, progress=None):
        PipelineRun.objects.filter(status=RunStatus.RUNNING).update(cancel_requested=True)
        return {}

    registry.register_step("correct", order=40, run=cancel_me)
    result = services.pipeline_run(steps=["correct", "validate"])
    assert result.status == RunStatus.CANCELLED
    assert result.steps[1].status == RunStatus.CANCELLED


def test_start_while_locked_is_a_conflict_and_schedule_skips(reference_data, pipeline_locked, caplog):
    with pytest.raises(ConflictError) as exc:
        services.pipeline_run()
    assert exc.value.status_code == 409
    assert not PipelineRun.objects.exists()
    with caplog.at_level("WARNING", logger="etl.pipeline"):
        skipped = services.pipeline_run(trigger="schedule", requested_by="schedule:nightly")
    assert skipped.status == RunStatus.SKIPPED
    assert "in progress" in skipped.error
    assert "skipped" in caplog.text
    with pytest.raises(ConflictError):
        services.pipeline_queue()


def test_queued_run_finding_the_lock_taken_is_skipped(reference_data, pipeline_locked):
    run = PipelineRun.objects.create(steps_requested=["sync"])
    result = services.pipeline_execute(run_id=run.pk)
    assert result.status == RunStatus.SKIPPED


def test_lock_is_released_after_a_run(reference_data):
    services.pipeline_run(steps=["sync"])
    assert services.pipeline_run(steps=["sync"]).ok


def test_stale_running_row_is_closed_when_the_next_run_starts(reference_data):
    stale = PipelineRun.objects.create(status=RunStatus.RUNNING)
    services.pipeline_run(steps=["sync"])
    stale.refresh_from_db()
    assert stale.status == RunStatus.FAILED
    assert "interrupted" in stale.error


def test_queued_run_executes_once(reference_data, django_capture_on_commit_callbacks):
    with mock.patch("etl.queue.async_task") as enqueue, django_capture_on_commit_callbacks(execute=True):
        run = services.pipeline_queue(steps=["sync"], requested_by="bob")
    assert enqueue.call_args.args == ("etl.tasks.pipeline_execute", run.pk)
    assert run.status == RunStatus.QUEUED

    assert tasks.pipeline_execute(run.pk) == RunStatus.SUCCEEDED
    # A second delivery of the same task does not run it again.
    assert tasks.pipeline_execute(run.pk) == RunStatus.SUCCEEDED
    assert PipelineStepRun.objects.filter(run=run).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_starts_exactly_one_runs(registry):
    services.reference_data_bootstrap()
    started = threading.Event()

    def slow(*, options, progress=None):
        started.set()
        time.sleep(0.5)
        return {}

    registry.register_step("correct", order=40, run=slow)
    barrier = threading.Barrier(2)
    outcomes = []

    def start():
        try:
            barrier.wait()
            outcomes.append(services.pipeline_run(steps=["correct"]).status)
        except ConflictError:
            outcomes.append("conflict")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", RunStatus.SUCCEEDED]
    assert PipelineRun.objects.count() == 1


def test_schedule_creates_a_django_q_cron_schedule_in_its_zone(reference_data):

    result = services.pipeline_schedule(cron="0 2 * * *", tz="Europe/Istanbul", name="nightly")
    schedule = Schedule.objects.get(pk=result.schedule_id)
    assert (schedule.func, schedule.schedule_type, schedule.cron) == ("etl.tasks.pipeline_scheduled", "C", "0 2 * * *")
    assert result.next_run.astimezone(UTC).hour == 23  # 02:00 in Istanbul (UTC+3)
    again = services.pipeline_schedule(cron="30 1 * * 1-5", tz="America/New_York", name="nightly")
    assert not again.created
    assert Schedule.objects.filter(name="nightly").count() == 1
    # New York: 01:30 EST is 06:30 UTC in winter, 05:30 UTC in summer.
    winter = cron_next_run("30 1 * * *", "America/New_York", after=datetime(2025, 1, 10, tzinfo=UTC))
    summer = cron_next_run("30 1 * * *", "America/New_York", after=datetime(2025, 7, 10, tzinfo=UTC))
    assert (winter.hour, summer.hour) == (6, 5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"cron": "61 * * * *"}, "cron"), ({"cron": "0 2 * * *", "tz": "Mars/Olympus"}, "timezone")],
)
def test_schedule_rejects_bad_cron_and_zone(kwargs, match):
    with pytest.raises(DomainError, match=match):
        services.pipeline_schedule(**kwargs)


def test_scheduled_task_runs_the_pipeline_as_the_schedule(reference_data):

    services.pipeline_schedule(cron="0 2 * * *", tz="Europe/Istanbul", name="nightly", steps=["sync"])
    Schedule.objects.filter(name="nightly").update(next_run="2000-01-01T00:00:00Z")
    kwargs = ast.literal_eval(Schedule.objects.get(name="nightly").kwargs)  # what django-q2 does
    assert tasks.pipeline_scheduled(**kwargs) == RunStatus.SUCCEEDED
    run = PipelineRun.objects.get()
    assert (run.trigger, run.requested_by) == ("schedule", "schedule:nightly")


def test_a_failed_run_mails_the_admins(registry, reference_data, settings, mailoutbox):
    settings.ADMINS = [("Ops", "ops@example.com")]
    registry.register_step("correct", order=40, run=boom)
    result = services.pipeline_run(steps=["sync", "correct"], continue_on_failure=True)
    assert result.status == RunStatus.FAILED
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["ops@example.com"]
    assert f"Pipeline run #{result.run_id} failed: step correct failed" in mail.subject


def test_a_successful_run_mails_nobody(etl_steps_only, reference_data, settings, mailoutbox):
    settings.ADMINS = [("Ops", "ops@example.com")]
    assert services.pipeline_run(steps=["sync"]).ok
    assert mailoutbox == []


def test_each_step_folds_the_deltas_it_left(registry, reference_data):
    """An import of 100,000 files left 1.5 M metric deltas and nothing folded them until the
    first scrape (8.6 s); the feature step leaves summary deltas the same way. Each step now
    folds what it left, so the pages that follow add up a few rows."""
    from django.db import connection

    from etl.models import IntegritySummaryDelta, MetricDelta

    def writes_deltas(*, options, progress=None):
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO metric_deltas (family, sample, type, labels, op, value)"
                " SELECT 'test_files', 'test_files_total', 'counter', '{}'::jsonb, 'add', 1"
                " FROM generate_series(1, 500)"
            )
            cur.execute(
                "INSERT INTO integrity_summary_deltas (market, metric, value)"
                " SELECT 'NASDAQ', 'candles.orphan', 0 FROM generate_series(1, 500)"
            )
        return {"files": 500}

    registry.register_step("correct", order=40, run=writes_deltas)
    seen = {}

    def on_step(step_run):
        if step_run.status != RunStatus.RUNNING:
            seen[step_run.name] = (MetricDelta.objects.count(), IntegritySummaryDelta.objects.count())

    assert services.pipeline_run(steps=["correct", "validate"], on_step=on_step).ok
    # What the next step and the run's end write is left for the next fold; the 1,000 are folded.
    assert MetricDelta.objects.count() < 50 and IntegritySummaryDelta.objects.count() < 50
    assert min(seen["correct"]) >= 500  # the step's end is recorded before the fold
