"""Recurring imports as django-q2 schedules (cron + time zone) that never
start while an import of the same schedule is still running.

A schedule keeps every field of the import request it was given (the API's
`importRequest`, the admin's form): stored in the schedule's kwargs under our
names and handed to `import_job_submit` each time it fires. What the request
left out is not stored, so it comes from the market's import settings at the
time the schedule fires (batchimport.services.market_settings)."""

from __future__ import annotations

import ast
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from django.db import transaction
from django.utils.translation import gettext
from django_q.models import Schedule

from batchimport.services.jobs import import_job_submit, market_key_parse, running_import_exists
from batchimport.services.paths import path_resolve
from etl.errors import DomainError

SCHEDULE_FUNC = "batchimport.tasks.scheduled_import"
SCHEDULE_PREFIX = "batchimport:"
# What a stored import request may carry: `import_job_create`'s options, under our names.
REQUEST_FIELDS = (
    "market",
    "batch_size",
    "max_concurrency",
    "max_attempts",
    "sla_minutes",
    "overwrite",
    "run_in_parallel",
    "ignored_options",  # the old options the request sent that we do not act on, kept with the schedule
)


def _request_clean(options: dict[str, Any]) -> dict[str, Any]:
    """The import request to store: only known fields, the None ones left out; the market as its key."""
    unknown = sorted(set(options) - set(REQUEST_FIELDS))
    if unknown:
        raise DomainError(
            gettext("unknown import option(s): %(names)s") % {"names": ", ".join(unknown)}, code="unknown_field"
        )
    stored = {key: value for key, value in options.items() if value is not None}
    if stored.get("market"):
        stored["market"] = market_key_parse(stored["market"])
    else:
        stored.pop("market", None)
    return stored


@transaction.atomic
def import_schedule_create(
    *, name: str, path: str, cron: str, tz: str = "UTC", options: dict[str, Any] | None = None
) -> Schedule:
    """A django-q2 cron schedule that runs an import of `path` (all markets
    unless `options["market"]`) with the rest of `options` (REQUEST_FIELDS);
    the next run is computed in `tz`."""
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
    request = _request_clean(options or {})
    full_name = f"{SCHEDULE_PREFIX}{name}"
    if Schedule.objects.filter(name=full_name).exists():
        raise DomainError(
            gettext("a schedule named %(name)s already exists") % {"name": repr(name)}, code="schedule_exists"
        )
    kwargs = {"name": full_name, "path": str(path), "tz": tz, "options": request}
    # The stored next run is the cron time in `tz` (etl re-aims every zoned schedule on save).
    return Schedule.objects.create(
        name=full_name, func=SCHEDULE_FUNC, kwargs=repr(kwargs), schedule_type=Schedule.CRON, cron=cron, repeats=-1
    )


def import_schedule_get(*, schedule_id: int) -> Schedule:
    """An import schedule by id (404 when there is none)."""
    schedule = Schedule.objects.filter(pk=schedule_id, func=SCHEDULE_FUNC).first()
    if schedule is None:
        raise DomainError(
            gettext("no import schedule %(schedule)s") % {"schedule": schedule_id}, code="not_found", status_code=404
        )
    return schedule


def import_schedule_request(schedule: Schedule) -> dict[str, Any]:
    """What an import schedule runs: `path`, `tz` and the stored import request (`options`)."""
    kwargs = ast.literal_eval(schedule.kwargs) if schedule.kwargs else {}
    return {"path": kwargs.get("path", "."), "tz": kwargs.get("tz", "UTC"), "options": kwargs.get("options") or {}}


def import_schedule_delete(*, schedule_id: int) -> None:
    """Delete an import schedule (404 when there is none with this id)."""
    deleted, _ = Schedule.objects.filter(pk=schedule_id, func=SCHEDULE_FUNC).delete()
    if not deleted:
        raise DomainError(
            gettext("no import schedule %(schedule)s") % {"schedule": schedule_id}, code="not_found", status_code=404
        )


def scheduled_import_run(*, name: str, path: str, tz: str = "UTC", options: dict[str, Any] | None = None) -> dict:
    """What a schedule runs: skip when the previous run is still going, else
    create the job with every stored field of its import request and hand it to
    the workers. (The scheduler has already aimed the schedule's next run in `tz`.)"""
    request = {key: value for key, value in (options or {}).items() if key in REQUEST_FIELDS}
    request.pop("ignored_options", None)
    if running_import_exists(schedule_name=name):
        return {"skipped": True, "reason": "the previous run of this schedule is still in progress"}
    # No market named: the folder says (market folders inside: all markets; a market's folder: that market).
    job = import_job_submit(
        path=path,
        market=request.pop("market", None),
        requested_by="schedule",
        schedule_name=name,
        **request,
    )
    return {"skipped": False, "job_id": job.pk}
