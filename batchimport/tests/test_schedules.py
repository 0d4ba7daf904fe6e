"""Recurring imports (django-q2 cron schedules that never overlap) and the SLA check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import import_module

import pytest
from django.apps import apps
from django.utils import timezone
from django_q import scheduler as django_q_scheduler
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule

from batchimport import samples, services, tasks
from batchimport.models import ImportJob, ImportStatus
from batchimport.parsing import Layout
from etl.errors import DomainError
from etl.timeparse import cron_next_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def folder(data_root):
    samples.write_file(data_root / "DATA" / "NYSE" / "KO.csv", Layout.STANDARD, ticker="KO", rows=5)
    return data_root


def test_next_run_is_computed_in_the_schedule_time_zone(folder):
    after = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)
    assert cron_next_run("0 2 * * *", "Europe/Istanbul", after=after) == datetime(2024, 7, 1, 23, 0, tzinfo=UTC)
    assert cron_next_run("0 2 * * *", "America/New_York", after=after) == datetime(2024, 7, 2, 6, 0, tzinfo=UTC)
    schedule = services.import_schedule_create(name="ist", path="DATA", cron="0 2 * * *", tz="Europe/Istanbul")
    assert Schedule.objects.get(pk=schedule.pk).next_run == cron_next_run("0 2 * * *", "Europe/Istanbul")


def test_scheduled_run_starts_an_import_and_skips_while_one_is_running(folder, django_capture_on_commit_callbacks):
    schedule = services.import_schedule_create(name="nightly", path="DATA", cron="0 2 * * *", tz="UTC")
    kwargs = eval(schedule.kwargs)  # noqa: S307 - the repr we wrote, as django-q2 reads it
    with django_capture_on_commit_callbacks(execute=True):
        first = tasks.scheduled_import(**kwargs)
    assert first["skipped"] is False
    job = ImportJob.objects.get(pk=first["job_id"])
    assert job.kind == "all_markets" and job.schedule_name == "batchimport:nightly" and job.requested_by == "schedule"
    assert OrmQ.objects.count() == 1  # handed to the workers
    second = tasks.scheduled_import(**kwargs)
    assert second == {"skipped": True, "reason": "the previous run of this schedule is still in progress"}
    services.import_job_cancel(job=job)
    assert tasks.scheduled_import(**kwargs)["skipped"] is False


def test_schedule_refuses_bad_input(folder):
    with pytest.raises(DomainError, match="cron"):
        services.import_schedule_create(name="x", path="DATA", cron="nightly")
    with pytest.raises(DomainError, match="time zone"):
        services.import_schedule_create(name="x", path="DATA", cron="0 2 * * *", tz="Mars/Base")
    with pytest.raises(DomainError, match="outside the data root"):
        services.import_schedule_create(name="x", path="/etc", cron="0 2 * * *")
    services.import_schedule_create(name="x", path="DATA", cron="0 2 * * *")
    with pytest.raises(DomainError, match="already exists"):
        services.import_schedule_create(name="x", path="DATA", cron="0 3 * * *")
    assert Schedule.objects.filter(func="batchimport.tasks.scheduled_import").count() == 1


def test_sla_check_flags_running_jobs_past_their_target(folder):
    job = services.import_job_create(path="DATA/NYSE", sla_minutes=25)
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.RUNNING, started_at=timezone.now())
    assert services.sla_check(now=timezone.now() + timedelta(minutes=24)) == 0
    assert services.sla_check(now=timezone.now() + timedelta(minutes=26)) == 1
    job.refresh_from_db()
    assert job.sla_breached and job.sla_state == "breached"
    assert services.sla_check(now=timezone.now() + timedelta(minutes=30)) == 0  # flagged once


def test_finished_job_past_its_sla_is_marked_breached(folder):
    job = services.import_job_create(path="DATA/NYSE", sla_minutes=20)
    ImportJob.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(minutes=21))
    job = services.import_job_start(job=job)
    assert job.status == ImportStatus.SUCCEEDED and job.sla_breached


def test_sla_check_schedule_is_created_by_its_migration():
    migration = import_module("batchimport.migrations.0003_fill_sla_schedule")
    Schedule.objects.filter(name=migration.NAME).delete()  # a transactional test may have flushed it
    migration.create(apps, None)
    migration.create(apps, None)  # idempotent
    schedule = Schedule.objects.get(name="batchimport:sla-check")
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == ("batchimport.tasks.sla_check", "I", 5)


def test_a_schedule_keeps_every_field_of_its_import_request_and_applies_them_when_it_fires(
    folder, api_client_for, monkeypatch, django_capture_on_commit_callbacks
):
    client = api_client_for(staff=True, perms=("batchimport.schedule_import",))
    request = {
        "stockScrapperDataPath": "DATA",
        "runMarketsInParallel": False,
        "globalMaxConcurrency": 3,
        "globalSlaTarget": "03:00:00",
        "batchSize": 250,
        "overwrite": True,
        "enableDuplicateCleanup": True,
    }
    body = {"name": "nightly", "importRequest": request, "cronExpression": "0 2 * * *", "timeZone": "Europe/Istanbul"}
    response = client.post("/api/batch-processing/schedules/all-markets", body, format="json")
    assert response.status_code == 201, response.content
    stored = {
        "run_in_parallel": False,
        "max_concurrency": 3,
        "sla_minutes": 180,
        "batch_size": 250,
        "overwrite": True,
        "ignored_options": {
            "import_request.enableDuplicateCleanup": response.json()["ignored_options"][
                "import_request.enableDuplicateCleanup"
            ]
        },
    }
    assert response.json()["import_request"] == stored and response.json()["path"] == "DATA"
    shown = client.get(f"/api/batch-processing/schedules/{response.json()['id']}").json()
    assert shown["import_request"] == stored and shown["timezone"] == "Europe/Istanbul"

    # Fire it: django-q2's own scheduler at the stored time, the sync queue running what it queues.
    schedule = Schedule.objects.get(pk=response.json()["id"])
    moment = schedule.next_run + timedelta(minutes=1)
    monkeypatch.setattr(timezone, "now", lambda: moment)
    monkeypatch.setattr(django_q_scheduler, "close_old_django_connections", lambda: None)
    monkeypatch.setattr(Conf, "SYNC", True)
    with django_capture_on_commit_callbacks(execute=True):
        django_q_scheduler.scheduler()
    job = ImportJob.objects.get(schedule_name="batchimport:nightly", parent=None)
    assert (job.kind, job.run_in_parallel, job.max_concurrency, job.sla_minutes) == ("all_markets", False, 3, 180)
    child = job.children.get()
    assert (child.market, child.batch_size, child.overwrite) == ("NYSE", 250, True)
    assert child.sla_minutes == 25 and child.max_concurrency == 4  # not in the request: the market's settings
    assert job.status == ImportStatus.SUCCEEDED and job.rows_inserted == 5


def test_a_schedule_without_an_import_request_stores_nothing_and_fires_with_the_settings(folder, reference_data):
    schedule = services.import_schedule_create(name="plain", path="DATA", cron="0 2 * * *")
    assert services.import_schedule_request(schedule)["options"] == {}
    kwargs = eval(schedule.kwargs)  # noqa: S307 - the repr we wrote, as django-q2 reads it
    job = ImportJob.objects.get(pk=tasks.scheduled_import(**kwargs)["job_id"])
    assert (job.max_concurrency, job.sla_minutes, job.children.get().batch_size) == (4, 120, 1500)


def test_a_schedule_refuses_an_option_it_would_not_apply(folder):
    with pytest.raises(DomainError, match="unknown import option"):
        services.import_schedule_create(name="x", path="DATA", cron="0 2 * * *", options={"workers": 3})
