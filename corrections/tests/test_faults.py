"""Concurrency and the recovery of a dead run: one execute of many requests, no
run left `queued` by a refusal, a failure recorded even when the connection died."""

from __future__ import annotations

import importlib
import threading

import pytest
from django.apps import apps as django_apps
from django.db import OperationalError, connection
from django_q.models import OrmQ, Schedule

from corrections import services
from corrections.models import CorrectionRun, Phase
from etl import locks
from etl.errors import ConflictError
from etl.models import RunStatus
from etl.recovery import write_after_reconnect

BASE = "/api/etl/asset-class-correction"
EXECUTE = ("corrections.execute_correction",)


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_async_executes_queue_exactly_one_run(world, api_client_for):
    client = api_client_for(staff=True, perms=EXECUTE)
    barrier = threading.Barrier(20)
    answers: list[tuple[int, dict]] = []

    def post() -> None:
        try:
            barrier.wait()
            response = client.post(f"{BASE}/execute", {"run_async": True}, format="json")
            answers.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    codes = sorted(code for code, _ in answers)
    assert codes == [202] + [409] * 19
    queued_id = next(body["run_id"] for code, body in answers if code == 202)
    assert all(f"Correction {queued_id} " in body["detail"] for code, body in answers if code == 409)
    assert OrmQ.objects.count() == 1
    # the refused requests' runs are not left queued: they say why they did not run
    assert list(CorrectionRun.objects.filter(status=RunStatus.QUEUED).values_list("pk", flat=True)) == [queued_id]
    refused = CorrectionRun.objects.exclude(pk=queued_id)
    assert refused.count() == 19
    assert all(r.status == RunStatus.CANCELLED and "not executed" in r.error for r in refused)


@pytest.mark.django_db
def test_a_run_the_worker_refuses_is_marked_failed_not_left_queued(world):
    first = services.correction_run_create(requested_by="a")
    second = services.correction_run_create(requested_by="b")
    CorrectionRun.objects.filter(pk=first.pk).update(phase=Phase.EXECUTING, status=RunStatus.FAILED)
    CorrectionRun.objects.filter(pk=second.pk).update(status=RunStatus.QUEUED)
    with pytest.raises(ConflictError):
        services.correction_execute(run=second)
    second.refresh_from_db()
    assert second.status == RunStatus.FAILED
    assert second.error.startswith(f"refused: Correction {first.pk} is")


@pytest.mark.django_db
def test_a_second_queue_of_a_waiting_run_is_refused(world):
    run = services.correction_run_create(requested_by="a")
    services.correction_execute_queue(run=run)
    other = services.correction_run_create(requested_by="b")
    with pytest.raises(ConflictError, match=f"Correction {run.pk} is"):
        services.correction_execute_queue(run=other)


@pytest.mark.django_db(transaction=True)
def test_a_failure_is_recorded_after_the_connection_died(world, monkeypatch):
    run = services.correction_run_create(requested_by="a")
    original = services._execute_batch

    def server_restarts(run_, low, high):
        with connection.cursor() as cur:  # the server ends our session, as a restart does
            cur.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return original(run_, low, high)

    monkeypatch.setattr(services, "_execute_batch", server_restarts)
    monkeypatch.setattr("etl.recovery.time.sleep", lambda seconds: None)
    with pytest.raises(OperationalError):
        services.correction_execute(run=run)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.phase == Phase.EXECUTING  # resumable from its last committed batch
    # the cause, named as such (not what the clean-up raised on the dead session), and what to do
    assert run.error == (
        "database connection lost (terminating connection due to administrator command);"
        f" execute it again to resume after id {run.last_id}"
    )


def _interrupted_at_the_second_batch(monkeypatch) -> CorrectionRun:
    """A pipeline's execute whose session was cut in its second batch (a PostgreSQL restart)."""
    run = services.correction_run_create(requested_by="pipeline", overwrite_mismatched=True, batch_size=10)
    original = services._execute_batch
    batches: list[int] = []

    def server_restarts(run_, low, high):
        batches.append(low)
        if len(batches) == 2:
            with connection.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return original(run_, low, high)

    with monkeypatch.context() as patch:
        patch.setattr(services, "_execute_batch", server_restarts)
        patch.setattr("etl.recovery.time.sleep", lambda seconds: None)
        with pytest.raises(OperationalError):
            services.correction_execute(run=run)
    run.refresh_from_db()
    assert (run.status, run.phase, run.batches_done) == (RunStatus.FAILED, Phase.EXECUTING, 1)
    return run


@pytest.mark.django_db(transaction=True)
def test_the_pipeline_step_resumes_an_interrupted_execute_and_each_row_changes_once(world, monkeypatch):
    run = _interrupted_at_the_second_batch(monkeypatch)
    summary = services.correct_step(options={"batch_size": 10})
    assert summary["resumed"] == {"run_id": run.pk, "rows_updated": 75, "status": "succeeded", "validated": True}
    assert summary["rows_updated"] == 0  # the new run found nothing left
    run.refresh_from_db()
    assert (run.phase, run.rows_updated) == (Phase.VALIDATED, run.backups.count())
    assert run.backups.values("market_data_id").distinct().count() == 75
    again = services.correct_step(options={})
    assert again["rows_updated"] == 0 and "resumed" not in again


@pytest.mark.django_db(transaction=True)
def test_the_pipeline_step_leaves_an_execute_an_operator_cancelled_to_them(world, monkeypatch):
    run = _interrupted_at_the_second_batch(monkeypatch)
    CorrectionRun.objects.filter(pk=run.pk).update(status=RunStatus.CANCELLED)
    with pytest.raises(ConflictError, match=f"Correction {run.pk} is executing and was interrupted"):
        services.correct_step(options={"batch_size": 10})
    run.refresh_from_db()
    assert (run.status, run.batches_done) == (RunStatus.CANCELLED, 1)


def test_write_after_reconnect_backs_off_and_logs_once(caplog):
    calls: list[int] = []
    delays: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise OperationalError("the connection is closed")
        return "recorded"

    assert write_after_reconnect(flaky, what="a test", sleep=delays.append) == "recorded"
    assert delays == [0.5, 1.0, 2.0]
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "reconnecting with backoff" in warnings[0].getMessage()


@pytest.mark.django_db
def test_the_sweep_marks_a_run_whose_process_died_failed_with_the_reason(world):
    run = services.correction_run_create(requested_by="a")
    CorrectionRun.objects.filter(pk=run.pk).update(phase=Phase.EXECUTING, status=RunStatus.RUNNING, last_id=41)
    assert services.correction_interrupted_sweep().runs_failed == (run.pk,)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.phase == Phase.EXECUTING
    assert "its process stopped mid-run" in run.error and "after id 41" in run.error
    assert services.correction_interrupted_sweep().runs_failed == ()


@pytest.mark.django_db
def test_the_sweep_leaves_a_live_run_alone(world):
    run = services.correction_run_create(requested_by="a")
    CorrectionRun.objects.filter(pk=run.pk).update(phase=Phase.EXECUTING, status=RunStatus.RUNNING)
    with locks.session_lock(locks.CORRECTION) as held:
        assert held
        assert services.correction_interrupted_sweep().runs_failed == ()
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


@pytest.mark.django_db
def test_the_sweep_is_scheduled_every_minute():
    # run the data migration's step again: a transactional test before this one may have flushed its row
    fill = importlib.import_module("corrections.migrations.0003_fill_interrupted_sweep_schedule")
    fill.create(django_apps, None)
    schedule = Schedule.objects.get(name="corrections:interrupted-sweep")
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "corrections.tasks.correction_interrupted_sweep",
        Schedule.MINUTES,
        1,
    )
