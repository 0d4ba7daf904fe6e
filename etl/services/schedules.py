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
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django_q.models import Schedule

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
