"""Time helpers every app shares: cron next-run times and operator-typed moments."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from croniter import croniter
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.translation import gettext

from etl.errors import DomainError


def cron_next_run(cron: str, tz: str, *, after: datetime | None = None) -> datetime:
    """The next time the cron expression fires in zone `tz` (wall-clock time there), in UTC."""
    zone = ZoneInfo(tz)
    base = (after or timezone.now()).astimezone(zone)
    return croniter(cron, base).get_next(datetime).astimezone(UTC)


def moment_parse(value: str | None, *, field: str) -> datetime | None:
    """An ISO date (midnight) or date-time; naive means UTC; empty means None.
    Raises DomainError naming `field` for anything else."""
    if not value:
        return None
    try:
        moment = parse_datetime(value)
        if moment is None:
            day = parse_date(value)
            moment = datetime.combine(day, time()) if day else None
    except ValueError:  # well-formed but impossible, e.g. 2024-02-30
        moment = None
    if moment is None:
        raise DomainError(
            gettext("%(field)s %(value)s: expected an ISO date (2024-01-31) or date-time")
            % {"field": field, "value": repr(value)},
            code="bad_date",
        )
    return moment_utc(moment, field=field)


def moment_utc(moment: datetime, *, field: str) -> datetime:
    """The moment in UTC (naive means UTC). An offset PostgreSQL refuses (+22:22) or a moment past the
    calendar once in UTC (9999-12-31T23:00-05:00) is a DomainError naming `field`, not a database error."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise DomainError(
            gettext("%(field)s %(value)s: out of range once in UTC")
            % {"field": field, "value": repr(moment.isoformat())},
            code="bad_date",
        ) from None
