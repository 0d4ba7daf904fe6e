"""Default django-q2 schedules of the feature step: one daily run per stock market after
that day's real close (its exchange calendar's, early closes and overrides included), one
hourly run for crypto. Created idempotently (an operator's edits in the admin are kept)
and never overlapping: a scheduled run that finds the previous one still going skips itself."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django.utils import timezone
from django_q.models import Schedule

from etl.calendars import MarketCalendar, last_close_before, market_calendar
from etl.models import Market

TASK = "enrichment.candles.tasks.features_scheduled"
LIVE_TASK = "enrichment.candles.tasks.live_poll"
CRYPTO_MARKETS = ("BINANCE",)
AFTER_CLOSE_MINUTES = 30


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    name: str
    cron: str
    kwargs: dict
    func: str = TASK


@dataclass(frozen=True, slots=True)
class MarketClose:
    minutes_of_day: list[int]  # UTC minutes of the day at which the market closes
    weekdays: list[int]  # Monday = 0


def _table_closes(calendar: MarketCalendar, now: datetime) -> MarketClose | None:
    """The exchange's closes over the coming year (regular and early, both sides of daylight saving)."""
    table = calendar.sessions
    start = int(now.timestamp())
    closes = table.closes[(table.closes >= start) & (table.closes < start + 366 * 86400)]
    if not len(closes):
        return None
    return MarketClose(
        minutes_of_day=sorted({int(c) % 86400 // 60 for c in closes}),
        weekdays=sorted({(int(c) // 86400 + 3) % 7 for c in closes}),  # 1970-01-01 was a Thursday
    )


def _weekly_closes(market: Market, now: datetime) -> MarketClose | None:
    """The weekly sessions' closes in UTC, in winter and in summer time."""
    sessions = [s for s in market.sessions.all() if s.is_active]
    if not sessions or any((s.start_weekday, s.start_time) == (s.end_weekday, s.end_time) for s in sessions):
        return None
    zone = ZoneInfo(market.timezone)
    minutes = set()
    for s in sessions:
        for month in (1, 7):
            local = datetime(now.year, month, 1, s.end_time.hour, s.end_time.minute, tzinfo=zone)
            utc = local.astimezone(UTC)
            minutes.add(utc.hour * 60 + utc.minute)
    return MarketClose(minutes_of_day=sorted(minutes), weekdays=sorted({s.end_weekday for s in sessions}))


def market_closes(market: Market, *, now: datetime) -> MarketClose | None:
    """When the market can close (None: it never does)."""
    calendar = market_calendar(market)
    if calendar.always_open:
        return None
    if calendar.sessions is not None:
        closes = _table_closes(calendar, now)
        if closes is not None:
            return closes
    return _weekly_closes(market, now)


def _after_close_cron(close: MarketClose) -> str:
    """Fires AFTER_CLOSE_MINUTES after each possible close; the run itself checks that day's
    real close (`due_close`), so the firings that follow an earlier one skip themselves."""
    at = sorted({(m + AFTER_CLOSE_MINUTES) % 1440 for m in close.minutes_of_day})
    minutes = ",".join(str(m) for m in sorted({a % 60 for a in at}))
    hours = ",".join(str(h) for h in sorted({a // 60 for a in at}))
    days = ",".join(str((d + 1) % 7) for d in close.weekdays)  # cron: Sunday = 0, ours: Monday = 0
    return f"{minutes} {hours} * * {days}"


def default_schedules(*, now: datetime | None = None, skip: frozenset[str] = frozenset()) -> list[ScheduleSpec]:
    """The default schedules, but those named in `skip`: a stock market's cron comes from its
    exchange calendar (about 0.3 s to build one), so the ones that exist are not worked out again."""
    now = now or timezone.now()
    # Live ingestion every minute; markets and symbols are switched on in the admin.
    specs = [ScheduleSpec("live: poll", "* * * * *", {}, func=LIVE_TASK)]
    markets = Market.objects.filter(is_active=True).prefetch_related("sessions", "closures").order_by("code")
    for market in markets:
        if market.code in CRYPTO_MARKETS:
            specs.append(ScheduleSpec(f"features: {market.code} hourly", "5 * * * *", {"market": market.code}))
            continue
        if f"features: {market.code} daily" in skip:
            continue
        close = market_closes(market, now=now)
        if close is None:
            continue
        specs.append(ScheduleSpec(f"features: {market.code} daily", _after_close_cron(close), {"market": market.code}))
    return specs


def due_close(market: Market, *, now: datetime) -> datetime | None:
    """The latest real close (early closes and overrides included) that is at least
    AFTER_CLOSE_MINUTES old, None when the market is always open (every run is due)."""
    calendar = market_calendar(market)
    if calendar.always_open:
        return None
    return last_close_before(calendar, now - timedelta(minutes=AFTER_CLOSE_MINUTES))


def schedules_ensure(*, now: datetime | None = None) -> list[str]:
    """Create the default schedules that are missing; return the names created."""
    created = []
    existing = frozenset(Schedule.objects.filter(name__startswith="features: ").values_list("name", flat=True))
    for spec in default_schedules(now=now, skip=existing):
        _, was_created = Schedule.objects.get_or_create(
            name=spec.name,
            defaults={
                "func": spec.func,
                "kwargs": spec.kwargs,
                "schedule_type": Schedule.CRON,
                "cron": spec.cron,
                "repeats": -1,
            },
        )
        if was_created:
            created.append(spec.name)
    return created
