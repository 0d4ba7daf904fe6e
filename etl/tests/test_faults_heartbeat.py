"""Heartbeats and run locks: an open reporter holds its run's session lock and stamps
its beat (at most every few seconds); the sweep fails, with the reason, a run still
`running` whose lock is free and whose beat stopped."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.db import connection, connections
from django.utils import timezone
from django_q.models import Schedule

from conftest import child_database_url
from etl import locks, progress
from etl.models import PipelineRun, RunHeartbeat, RunStatus
from etl.progress import ProgressReporter
from etl.recovery import DEAD_AFTER, runs_heartbeat_sweep

pytestmark = pytest.mark.django_db
LABEL = "etl.pipelinerun"
PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh_heartbeat(monkeypatch):
    monkeypatch.setattr(progress, "_heartbeat", progress._Heartbeat())


def _running() -> PipelineRun:
    return PipelineRun.objects.create(status=RunStatus.RUNNING, started_at=timezone.now())


def _beat(run: PipelineRun, minutes_ago: float) -> None:
    RunHeartbeat.objects.update_or_create(
        run_model=LABEL, run_id=run.pk, defaults={"beat_at": timezone.now() - timedelta(minutes=minutes_ago)}
    )


def test_an_open_reporter_stamps_its_run_at_once_then_at_most_every_few_seconds():
    run = _running()
    reporter = ProgressReporter(run, total=10, interval=0)
    first = RunHeartbeat.objects.get(run_model=LABEL, run_id=run.pk).beat_at
    reporter.advance(1)  # a flush, within HEARTBEAT_SECONDS of the first beat: no new stamp
    assert RunHeartbeat.objects.get(run_model=LABEL, run_id=run.pk).beat_at == first
    progress._heartbeat.last = float("-inf")  # HEARTBEAT_SECONDS later
    reporter.advance(1)
    assert RunHeartbeat.objects.get(run_model=LABEL, run_id=run.pk).beat_at > first
    reporter.close()


def test_work_reporting_on_another_record_keeps_the_open_run_beating():
    run = _running()
    outer = ProgressReporter(run)
    _beat(run, minutes_ago=10)
    progress._heartbeat.last = float("-inf")
    inner = ProgressReporter(None, interval=0)  # e.g. an import step's file reporter
    inner.advance(1)
    beat = RunHeartbeat.objects.get(run_model=LABEL, run_id=run.pk).beat_at
    assert timezone.now() - beat < timedelta(seconds=30)
    outer.close()


def test_a_closed_reporter_no_longer_beats_for_its_run():
    run = _running()
    ProgressReporter(run).close()
    _beat(run, minutes_ago=10)
    progress._heartbeat.last = float("-inf")
    ProgressReporter(None, interval=0).advance(1)
    beat = RunHeartbeat.objects.get(run_model=LABEL, run_id=run.pk).beat_at
    assert timezone.now() - beat > timedelta(minutes=9)


def _run_lock_elsewhere(run: PipelineRun):
    """Another process's session holding the run's lock: a live process reporting nothing lately."""
    other = connections.create_connection("default")
    with other.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s, %s)", locks.RUN.key(progress.run_lock_item(run)))
    return other


@pytest.mark.django_db(transaction=True)
def test_the_sweep_fails_a_running_run_whose_lock_is_free_and_beat_stopped_with_the_reason():
    dead, silent, opening, unknown = _running(), _running(), _running(), _running()
    _beat(dead, minutes_ago=1)
    _beat(silent, minutes_ago=30)  # a long statement: no beat, but its process holds the lock
    _beat(opening, minutes_ago=0)  # a reporter opening right now: the margin keeps the sweep off
    other = _run_lock_elsewhere(silent)
    try:
        result = runs_heartbeat_sweep()
        assert runs_heartbeat_sweep().runs_failed == {}  # once
    finally:
        other.close()
    assert result.runs_failed == {LABEL: (dead.pk,)}
    dead.refresh_from_db()
    assert dead.status == RunStatus.FAILED and dead.finished_at is not None
    assert dead.error.startswith("its process stopped (killed, or its database connection lost)")
    assert "no process holds its run lock" in dead.error and dead.error.endswith("run it again")
    statuses = dict(PipelineRun.objects.filter(pk__in=[silent.pk, opening.pk, unknown.pk]).values_list("pk", "status"))
    assert set(statuses.values()) == {RunStatus.RUNNING}  # alive, just opened, or no beat: cannot tell
    assert not RunHeartbeat.objects.filter(run_id=dead.pk).exists()  # a finished run's beat is dropped


@pytest.mark.django_db(transaction=True)
def test_an_open_reporter_holds_its_run_lock_and_a_closed_one_releases_it_and_its_beat():
    run = _running()
    held = locks.RUN.key(progress.run_lock_item(run))[1]
    reporter = ProgressReporter(run, total=10, interval=0)
    assert held in locks.held_items(locks.RUN)
    reporter.close()
    assert held not in locks.held_items(locks.RUN)
    assert not RunHeartbeat.objects.filter(run_model=LABEL, run_id=run.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_a_reporter_takes_its_run_lock_again_on_a_new_session():
    run = _running()
    held = locks.RUN.key(progress.run_lock_item(run))[1]
    reporter = ProgressReporter(run, total=10, interval=0)
    connection.close()  # the session and its locks are gone (a reconnect after a restart)
    reporter.advance(1)
    assert held in locks.held_items(locks.RUN)
    reporter.close()
    assert held not in locks.held_items(locks.RUN)


def test_the_sweep_leaves_a_finished_run_alone():
    done = PipelineRun.objects.create(status=RunStatus.SUCCEEDED, started_at=timezone.now())
    _beat(done, minutes_ago=60)
    assert runs_heartbeat_sweep().runs_failed == {}
    done.refresh_from_db()
    assert done.status == RunStatus.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_a_pipeline_run_whose_process_holds_the_pipeline_lock_is_alive_whatever_its_beat():
    run = _running()
    _beat(run, minutes_ago=60)
    other = connections.create_connection("default")  # another process's session
    try:
        with other.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s, %s)", locks.PIPELINE.key())
        assert runs_heartbeat_sweep().runs_failed == {}
        with other.cursor() as cur:  # that process ends its run (a closed session's locks go asynchronously)
            cur.execute("SELECT pg_advisory_unlock(%s, %s)", locks.PIPELINE.key())
    finally:
        other.close()
    assert runs_heartbeat_sweep().runs_failed == {LABEL: (run.pk,)}


def test_old_beats_are_dropped():
    run = PipelineRun.objects.create(status=RunStatus.SUCCEEDED)
    _beat(run, minutes_ago=2 * 24 * 60)
    runs_heartbeat_sweep()
    assert not RunHeartbeat.objects.exists()


def test_the_sweep_is_scheduled_every_minute():
    # the data migration's step again: a transactional test before this one may have flushed its row
    migration = importlib.import_module("etl.migrations.0007_heartbeats_signing_probes")
    migration.create_sweep(django_apps, None)
    schedule = Schedule.objects.get(name="etl:heartbeat-sweep")
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "etl.recovery.runs_heartbeat_sweep",
        Schedule.MINUTES,
        1,
    )


CHILD_RUN = """
import sys, time
import django
django.setup()
from django.utils import timezone
from etl import locks
from etl.models import PipelineRun, RunStatus
from etl.progress import ProgressReporter

locks.try_session_lock(locks.PIPELINE)
run = PipelineRun.objects.create(status=RunStatus.RUNNING, started_at=timezone.now())
reporter = ProgressReporter(run, total=1000, interval=0)
print(run.pk, flush=True)
while True:
    reporter.advance(1)
    time.sleep(0.2)
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_killed_process_running_a_pipeline_is_found_by_the_next_sweep():
    env = {**os.environ, "DATABASE_URL": child_database_url(), "DEBUG": "on"}
    child = subprocess.Popen([sys.executable, "-c", CHILD_RUN], cwd=PROJECT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        run_id = int(child.stdout.readline())
        assert runs_heartbeat_sweep().runs_failed == {}  # alive: beating, and holding its locks
    finally:
        child.kill()  # SIGKILL: no error path runs, nothing is written
        child.wait(timeout=10)
    killed_at = time.monotonic()
    assert PipelineRun.objects.get(pk=run_id).status == RunStatus.RUNNING
    while not runs_heartbeat_sweep().runs_failed:  # what the every-minute schedule does
        assert time.monotonic() - killed_at < 60, "not found within a minute"
        time.sleep(1)
    assert time.monotonic() - killed_at < DEAD_AFTER.total_seconds() + 10
    assert "its process stopped" in PipelineRun.objects.get(pk=run_id).error
