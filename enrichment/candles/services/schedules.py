"""Default django-q2 schedules of the feature step: one daily run per stock market after
its close, one hourly run for crypto. Created idempotently (an operator's edits in the
admin are kept) and never overlapping: a scheduled run that finds the previous one still
going skips itself."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from django_q.models import Schedule

from etl.models import Market

TASK = "enrichment.candles.tasks.features_scheduled"
CRYPTO_MARKETS = ("BINANCE",)
AFTER_CLOSE_MINUTES = 30


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    name: str
    cron: str
    kwargs: dict


@dataclass(frozen=True, slots=True)
class MarketClose:
    minute_of_day: int  # UTC
    weekdays: list[int]  # Monday = 0


def _close_utc_minute(market: Market) -> MarketClose | None:
    """Latest close of the market's sessions in UTC minutes of the day over the year (so that
    daylight saving never moves the run before the close), and the weekdays it closes on."""
    sessions = list(market.sessions.filter(is_active=True))
    if not sessions or any((s.start_weekday, s.start_time) == (s.end_weekday, s.end_time) for s in sessions):
        return None
    zone = ZoneInfo(market.timezone)
    latest = 0
    for s in sessions:
        for month in (1, 7):
            local = datetime(2024, month, 1, s.end_time.hour, s.end_time.minute, tzinfo=zone)
            utc = local.astimezone(ZoneInfo("UTC"))
            latest = max(latest, utc.hour * 60 + utc.minute)
    return MarketClose(minute_of_day=latest, weekdays=sorted({s.end_weekday for s in sessions}))


def default_schedules() -> list[ScheduleSpec]:
    specs = []
    for market in Market.objects.filter(is_active=True).prefetch_related("sessions").order_by("code"):
        if market.code in CRYPTO_MARKETS:
            specs.append(ScheduleSpec(f"features: {market.code} hourly", "5 * * * *", {"market": market.code}))
            continue
        close = _close_utc_minute(market)
        if close is None:
            continue
        at = (close.minute_of_day + AFTER_CLOSE_MINUTES) % 1440
        days = ",".join(str((d + 1) % 7) for d in close.weekdays)  # cron: Sunday = 0, ours: Monday = 0
        cron = f"{at % 60} {at // 60} * * {days}"
        specs.append(ScheduleSpec(f"features: {market.code} daily", cron, {"market": market.code}))
    return specs


def schedules_ensure() -> list[str]:
    """Create the default schedules that are missing; return the names created."""
    created = []
    for spec in default_schedules():
        _, was_created = Schedule.objects.get_or_create(
            name=spec.name,
            defaults={
                "func": TASK,
                "kwargs": spec.kwargs,
                "schedule_type": Schedule.CRON,
                "cron": spec.cron,
                "repeats": -1,
            },
        )
        if was_created:
            created.append(spec.name)
    return created
