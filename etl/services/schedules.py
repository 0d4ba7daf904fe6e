"""Every cron schedule fires at its cron time in its own time zone.

django-q2 computes a cron schedule's `next_run` in the server's zone (UTC):
when a schedule is first saved and again each time its scheduler fires it.
A schedule whose kwargs carry `tz` (pipeline and import schedules) is meant
in that zone, so each save of such a row re-aims `next_run` there — on
creation, on an edit in the admin and after every run, whichever process
saves it. The scheduler saves the row itself, so the stored time is right
from the first run on, even while no task of ours has run yet.
"""

from __future__ import annotations

import ast
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils.translation import gettext
from django_q.models import Schedule

from etl.errors import DomainError
from etl.queue import queue_on_commit
from etl.timeparse import cron_next_run


def schedule_zone(schedule: Schedule) -> str | None:
    """The IANA zone a schedule's kwargs name as `tz`, or None (server zone)."""
    if not schedule.kwargs:
        return None
    try:
        kwargs = ast.literal_eval(schedule.kwargs) if isinstance(schedule.kwargs, str) else schedule.kwargs
    except (SyntaxError, ValueError):  # django-q2 also allows "a=1, b=2": no tz of ours
        return None
    tz = kwargs.get("tz") if isinstance(kwargs, dict) else None
    if not isinstance(tz, str) or not tz:
        return None
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return tz


def schedule_next_run(schedule: Schedule, *, after: datetime | None = None) -> datetime | None:
    """The next time a zoned cron schedule should fire (UTC), or None when django-q2's own time stands."""
    if schedule.schedule_type != Schedule.CRON or not schedule.cron:
        return None
    tz = schedule_zone(schedule)
    return cron_next_run(schedule.cron, tz, after=after) if tz else None


def schedule_keep_zone(sender: Any, instance: Schedule, **kwargs: Any) -> None:
    """pre_save receiver on django-q2's Schedule: put a zoned cron schedule's next
    run in its zone. `Schedule.save()` computes its UTC time before calling
    Django's save, which sends pre_save, so this has the last word."""
    next_run = schedule_next_run(instance)
    if next_run is not None:
        instance.next_run = next_run


# ---------------------------------------------------------------------------
# Running a schedule now (the admin's "Run now", POST /api/schedules/{id}/run-now)

# What an operator needs to fire a schedule now, by the task it runs; apps register
# theirs from AppConfig.ready(). Any other schedule: the right to change schedules.
_RUN_PERMISSIONS: dict[str, str] = {"etl.tasks.pipeline_scheduled": "etl.run_pipeline"}
DEFAULT_RUN_PERMISSION = "django_q.change_schedule"


def register_schedule_permission(func: str, permission: str) -> None:
    """A schedule running `func` may be fired now by staff holding `permission`."""
    _RUN_PERMISSIONS[func] = permission


def schedule_run_permission(schedule: Schedule) -> str:
    return _RUN_PERMISSIONS.get(schedule.func, DEFAULT_RUN_PERMISSION)


def schedule_call(schedule: Schedule) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The positional and keyword arguments the scheduler passes to the schedule's task:
    `args` a Python literal, `kwargs` a dict literal or `a=1, b=2` (django-q2 takes both)."""
    try:
        args = ast.literal_eval(schedule.args) if schedule.args else ()
        kwargs: dict[str, Any] = {}
        if schedule.kwargs:
            call = ast.parse(f"dict({schedule.kwargs})", mode="eval").body
            for positional in call.args:
                kwargs.update(ast.literal_eval(positional))
            for keyword in call.keywords:
                kwargs[keyword.arg] = ast.literal_eval(keyword.value)
    except (SyntaxError, ValueError, TypeError, AttributeError) as exc:
        raise DomainError(
            gettext("schedule %(schedule)s: its arguments cannot be read (%(error)s)")
            % {"schedule": schedule.pk, "error": exc},
            code="bad_schedule_arguments",
        ) from None
    return (args if isinstance(args, tuple) else (args,)), kwargs


@dataclass(frozen=True, slots=True)
class RunNowResult:
    schedule_id: int
    name: str
    func: str
    task_id: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def schedule_run_now(*, schedule: Schedule) -> RunNowResult:
    """Queue what the schedule runs, with its arguments, once the caller's transaction
    commits, as its scheduler would at its next run (which stays as it is)."""
    args, kwargs = schedule_call(schedule)
    task = queue_on_commit(schedule.func, *args, group=schedule.name or f"schedule-{schedule.pk}", **kwargs)
    return RunNowResult(schedule_id=schedule.pk, name=schedule.name or "", func=schedule.func, task_id=task.task_id)
