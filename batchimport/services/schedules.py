"""Recurring imports as django-q2 schedules (cron + time zone) that never
start while an import of the same schedule is still running."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from django.db import transaction
from django.utils.translation import gettext
from django_q.models import Schedule

from batchimport.services.jobs import import_job_submit, running_import_exists
from batchimport.services.paths import path_resolve
from etl.errors import DomainError

SCHEDULE_FUNC = "batchimport.tasks.scheduled_import"
SCHEDULE_PREFIX = "batchimport:"


@transaction.atomic
def import_schedule_create(
    *, name: str, path: str, cron: str, tz: str = "UTC", options: dict[str, Any] | None = None
) -> Schedule:
    """A django-q2 cron schedule that runs an import of `path` (all markets
    unless `options["market"]`); the next run is computed in `tz`."""
    if not croniter.is_valid(cron or ""):
        raise DomainError(
            gettext("%(cron)s is not a valid cron expression") % {"cron": repr(cron)}, code="invalid_cron"
        )
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise DomainError(
            gettext("%(zone)s is not an IANA time zone") % {"zone": repr(tz)}, code="invalid_timezone"
        ) from None
    path_resolve(path=path)
    full_name = f"{SCHEDULE_PREFIX}{name}"
    if Schedule.objects.filter(name=full_name).exists():
        raise DomainError(
            gettext("a schedule named %(name)s already exists") % {"name": repr(name)}, code="schedule_exists"
        )
    kwargs = {"name": full_name, "path": str(path), "tz": tz, "options": options or {}}
    # The stored next run is the cron time in `tz` (etl re-aims every zoned schedule on save).
    return Schedule.objects.create(
        name=full_name, func=SCHEDULE_FUNC, kwargs=repr(kwargs), schedule_type=Schedule.CRON, cron=cron, repeats=-1
    )


def import_schedule_delete(*, schedule_id: int) -> None:
    """Delete an import schedule (404 when there is none with this id)."""
    deleted, _ = Schedule.objects.filter(pk=schedule_id, func=SCHEDULE_FUNC).delete()
    if not deleted:
        raise DomainError(
            gettext("no import schedule %(schedule)s") % {"schedule": schedule_id}, code="not_found", status_code=404
        )


def scheduled_import_run(*, name: str, path: str, tz: str = "UTC", options: dict[str, Any] | None = None) -> dict:
    """What a schedule runs: skip when the previous run is still going, else
    create the job and hand it to the workers. (The scheduler has already
    aimed the schedule's next run in `tz`.)"""
    options = options or {}
    if running_import_exists(schedule_name=name):
        return {"skipped": True, "reason": "the previous run of this schedule is still in progress"}
    job = import_job_submit(
        path=path,
        market=options.get("market"),
        all_markets=not options.get("market"),
        batch_size=options.get("batch_size"),
        run_in_parallel=options.get("run_in_parallel", True),
        max_concurrency=options.get("max_concurrency", 2),
        requested_by="schedule",
        schedule_name=name,
    )
    return {"skipped": False, "job_id": job.pk}
