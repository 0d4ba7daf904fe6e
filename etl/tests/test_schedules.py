"""Zoned cron schedules: the stored row's next run is the cron time in the
schedule's own zone, from creation on and after each time django-q2's real
scheduler fires it, across a daylight-saving change."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.utils import timezone
from django_q import scheduler as django_q_scheduler
from django_q.models import OrmQ, Schedule

from etl import services

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock(monkeypatch):
    """Set the time Django and django-q2 read (`timezone.now`)."""

    def set_to(*args: int) -> datetime:
        moment = datetime(*args, tzinfo=UTC)
        monkeypatch.setattr(timezone, "now", lambda: moment)
        return moment

    return set_to


@pytest.fixture
def scheduler(monkeypatch):
    """django-q2's own scheduler pass. It closes stale connections first, which
    would close the test's transaction: that one call is left out."""
    monkeypatch.setattr(django_q_scheduler, "close_old_django_connections", lambda: None)
    return django_q_scheduler.scheduler


def stored(name: str) -> datetime:
    return Schedule.objects.get(name=name).next_run.astimezone(UTC)


def test_a_new_istanbul_schedule_is_stored_at_two_in_istanbul(reference_data, clock):
    clock(2026, 3, 1, 12, 0)
    result = services.pipeline_schedule(cron="0 2 * * *", tz="Europe/Istanbul", name="nightly")
    assert stored("nightly") == datetime(2026, 3, 1, 23, 0, tzinfo=UTC)  # 02:00 at UTC+3
    assert result.next_run == stored("nightly")  # the answer is the row


def test_the_scheduler_keeps_a_new_york_schedule_at_local_time_across_dst(reference_data, clock, scheduler):
    # Daylight saving starts in New York on Sunday 2026-03-08 at 02:00 local.
    clock(2026, 3, 6, 12, 0)
    services.pipeline_schedule(cron="30 1 * * *", tz="America/New_York", name="ny")
    assert stored("ny") == datetime(2026, 3, 7, 6, 30, tzinfo=UTC)  # 01:30 EST
    clock(2026, 3, 7, 6, 31)
    scheduler()
    assert OrmQ.objects.count() == 1  # it fired
    assert stored("ny") == datetime(2026, 3, 8, 6, 30, tzinfo=UTC)  # 01:30 EST, before the change
    clock(2026, 3, 8, 6, 31)
    scheduler()
    assert OrmQ.objects.count() == 2
    assert stored("ny") == datetime(2026, 3, 9, 5, 30, tzinfo=UTC)  # 01:30 EDT


def test_any_schedule_naming_a_zone_is_re_aimed_and_others_are_left_to_django_q(clock, scheduler):
    clock(2026, 10, 23, 12, 0)  # Europe/London leaves summer time on 2026-10-25 at 01:00 UTC
    # Only these two: the default schedules that migrations create would fire too.
    Schedule.objects.all().delete()
    zoned = Schedule.objects.create(
        name="london", func="math.floor", kwargs=repr({"tz": "Europe/London"}), schedule_type="C", cron="0 9 * * *"
    )
    plain = Schedule.objects.create(name="utc", func="math.floor", schedule_type="C", cron="0 9 * * *")
    assert stored("london") == datetime(2026, 10, 24, 8, 0, tzinfo=UTC)  # 09:00 BST
    assert stored("utc") == datetime(2026, 10, 24, 9, 0, tzinfo=UTC)
    clock(2026, 10, 24, 9, 30)
    scheduler()
    assert OrmQ.objects.count() == 2
    assert stored("london") == datetime(2026, 10, 25, 9, 0, tzinfo=UTC)  # 09:00 GMT
    assert stored("utc") == datetime(2026, 10, 25, 9, 0, tzinfo=UTC)
    assert {zoned.pk, plain.pk} == set(Schedule.objects.values_list("pk", flat=True))


def test_bootstrap_creates_the_daily_enrichment_run_at_the_old_settings_time(reference_data):
    schedule = Schedule.objects.get(name="enrichment-daily")
    assert (schedule.func, schedule.cron) == ("etl.tasks.pipeline_scheduled", "30 1 * * *")
    assert eval(schedule.kwargs)["steps"] == ["enrich", "features"]  # noqa: S307 - the repr bootstrap wrote
