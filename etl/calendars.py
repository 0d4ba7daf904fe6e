"""The one place that answers "is a bar expected at t on market M": the exchange's real
trading days, hours, holidays and early closes from `exchange-calendars` (the market's
`calendar_code`, e.g. XNYS, XNAS, XIST), 24x7 for crypto ("24/7"), the weekly trading
sessions for a market without a code (FX: Sunday 17:00 to Friday 17:00 New York time),
and on top of any of them the operator's overrides (`MarketClosure`: an unscheduled
closure, or an early close).

The pure part (`MarketCalendar`, `expected_mask`, `session_close`) takes no ORM; the
`market_calendar*` builders read a market's sessions and overrides.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

WEEK_MINUTES = 7 * 1440
DAY = 86400
ALWAYS_OPEN_CODE = "24/7"
# The exchange calendars this project knows; any other exchange-calendars code works too.
EXCHANGE_CODES = ("XIST", "XNYS", "XNAS")


@dataclass(frozen=True, slots=True)
class Closure:
    """An operator override: the market is closed on `day` (local date) from `close_at`
    (local time) on, or the whole day when `close_at` is None."""

    day: date
    close_at: time | None = None


@dataclass(frozen=True, slots=True, eq=False)
class SessionTable:
    """An exchange's sessions: open and close (UTC seconds) and session date (days since
    1970-01-01), sorted; between `first_day` and `last_day` a day without a row is closed."""

    opens: np.ndarray
    closes: np.ndarray
    days: np.ndarray
    first_day: int
    last_day: int

    def covers(self, ts_seconds: np.ndarray) -> np.ndarray:
        day = ts_seconds // DAY
        return (day >= self.first_day) & (day <= self.last_day)


@dataclass(frozen=True, slots=True, eq=False)
class MarketCalendar:
    timezone: str
    # Weekly sessions: (start, end) minute of the week (Monday 00:00 = 0) in local time;
    # start == end: always open. Used where no exchange table covers a moment.
    intervals: tuple[tuple[int, int], ...]
    code: str = ""
    sessions: SessionTable | None = None
    closures: tuple[Closure, ...] = ()

    @property
    def always_open(self) -> bool:
        if self.sessions is not None or self.closures:
            return False
        return self.code == ALWAYS_OPEN_CODE or not self.intervals or any(s == e for s, e in self.intervals)

    def trading_day_seconds(self) -> int:
        """Length of a regular trading day (the longest session), 24 h when always open."""
        if self.sessions is not None and len(self.opens_closes_lengths()):
            return int(np.max(self.opens_closes_lengths()))
        if self.always_open or not self.intervals or any(s == e for s, e in self.intervals):
            return DAY
        return max((end - start) % WEEK_MINUTES for start, end in self.intervals) * 60

    def opens_closes_lengths(self) -> np.ndarray:
        return self.sessions.closes - self.sessions.opens if self.sessions is not None else np.array([])


ALWAYS_OPEN = MarketCalendar(timezone="UTC", intervals=(), code=ALWAYS_OPEN_CODE)


def weekly_calendar(timezone: str, sessions, *, closures: tuple[Closure, ...] = ()) -> MarketCalendar:
    """From objects with start_weekday/start_time/end_weekday/end_time (TradingSession rows)."""
    intervals = tuple(
        (
            s.start_weekday * 1440 + s.start_time.hour * 60 + s.start_time.minute,
            s.end_weekday * 1440 + s.end_time.hour * 60 + s.end_time.minute,
        )
        for s in sessions
    )
    return MarketCalendar(timezone=timezone, intervals=intervals, closures=closures)


@functools.lru_cache(maxsize=16)
def _exchange_table(code: str) -> SessionTable:
    """exchange-calendars' schedule of `code` over its default range (about twenty years back,
    one ahead), read once per process: building a calendar takes 0.2-0.6 s (measured)."""
    # Imported here: exchange_calendars pulls in its 60-odd calendar modules (0.5 s, measured
    # with `python -X importtime`), which only a computation that needs one should pay.
    import exchange_calendars

    with warnings.catch_warnings():
        # exchange-calendars 4.13 still calls pandas APIs that pandas 3 deprecates (weekday):
        # its warnings, not ours, and they would repeat in every process that builds one.
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        schedule = exchange_calendars.get_calendar(code).schedule

    def seconds(column: str, rows) -> np.ndarray:
        return pd.DatetimeIndex(schedule[column][rows]).as_unit("s").asi8

    days = pd.DatetimeIndex(schedule.index).as_unit("s").asi8 // DAY
    has_break = schedule["break_start"].notna().to_numpy()
    plain = ~has_break
    # A lunch break makes two sessions that day, both labelled with its date.
    opens = np.concatenate([seconds("open", plain), seconds("open", has_break), seconds("break_end", has_break)])
    closes = np.concatenate([seconds("close", plain), seconds("break_start", has_break), seconds("close", has_break)])
    days = np.concatenate([days[plain], days[has_break], days[has_break]])
    order = np.argsort(opens, kind="stable")
    opens, closes, days = opens[order], closes[order], days[order]
    return SessionTable(
        opens=opens,
        closes=closes,
        days=days,
        first_day=int(days[0]),
        last_day=int(days[-1]),
    )


def known_code(code: str) -> bool:
    if code in ("", ALWAYS_OPEN_CODE):
        return True
    import exchange_calendars  # see _exchange_table for why here

    return code in exchange_calendars.get_calendar_names(include_aliases=True)


def _with_closures(table: SessionTable, timezone: str, closures: tuple[Closure, ...]) -> SessionTable:
    """The table with each override applied: a closed day loses its sessions, an early close
    ends that day's sessions at the given local time."""
    if not closures:
        return table
    zone = ZoneInfo(timezone)
    keep = np.ones(len(table.opens), dtype=bool)
    closes = table.closes.copy()
    for closure in closures:
        day_rows = table.days == (closure.day - date(1970, 1, 1)).days
        if closure.close_at is None:
            keep &= ~day_rows
            continue
        cut = int(datetime.combine(closure.day, closure.close_at, tzinfo=zone).timestamp())
        closes = np.where(day_rows, np.minimum(closes, cut), closes)
        keep &= ~(day_rows & (closes <= table.opens))
    return SessionTable(
        opens=table.opens[keep],
        closes=closes[keep],
        days=table.days[keep],
        first_day=table.first_day,
        last_day=table.last_day,
    )


def exchange_calendar(code: str, timezone: str, *, intervals=(), closures: tuple[Closure, ...] = ()) -> MarketCalendar:
    """A calendar on exchange-calendars' `code` ("24/7": always open), overrides applied."""
    if code == ALWAYS_OPEN_CODE:
        return MarketCalendar(timezone=timezone, intervals=(), code=code, closures=closures)
    table = _with_closures(_exchange_table(code), timezone, closures)
    return MarketCalendar(timezone=timezone, intervals=tuple(intervals), code=code, sessions=table, closures=closures)


def _minute_of_week(ts_seconds: np.ndarray, timezone: str) -> np.ndarray:
    local = pd.DatetimeIndex(pd.to_datetime(ts_seconds, unit="s", utc=True)).tz_convert(timezone)
    return np.asarray(local.day_of_week * 1440 + local.hour * 60 + local.minute, dtype=np.int64)


def _weekly_open_at(calendar: MarketCalendar, minute_of_week: np.ndarray) -> np.ndarray:
    if not calendar.intervals or any(start == end for start, end in calendar.intervals):
        return np.ones(len(minute_of_week), dtype=bool)
    result = np.zeros(len(minute_of_week), dtype=bool)
    for start, end in calendar.intervals:
        if start < end:
            result |= (minute_of_week >= start) & (minute_of_week < end)
        else:
            result |= (minute_of_week >= start) | (minute_of_week < end)
    return result


def _weekly_expected(ts_seconds: np.ndarray, calendar: MarketCalendar, timeframe_seconds: int) -> np.ndarray:
    """Weekly sessions. Intraday: open at the bar's start, middle or last minute. Daily and
    longer (ts is the date): open at noon local time that day, so that the FX week's Sunday
    evening does not make Sunday a trading day and its Friday does."""
    if timeframe_seconds >= DAY:
        local_noon = ((ts_seconds // DAY) + 3) % 7 * 1440 + 720  # 1970-01-01 was a Thursday
        return _weekly_open_at(calendar, local_noon)
    result = np.zeros(len(ts_seconds), dtype=bool)
    for offset in sorted({0, timeframe_seconds // 2, max(0, timeframe_seconds - 60)}):
        result |= _weekly_open_at(calendar, _minute_of_week(ts_seconds + offset, calendar.timezone))
    return result


def _closure_mask(ts_seconds: np.ndarray, calendar: MarketCalendar, timeframe_seconds: int) -> np.ndarray:
    """Bars an override closes on a calendar without an exchange table (crypto, FX)."""
    closed = np.zeros(len(ts_seconds), dtype=bool)
    zone = ZoneInfo(calendar.timezone)
    for closure in calendar.closures:
        if timeframe_seconds >= DAY:
            if closure.close_at is None:
                closed |= ts_seconds // DAY == (closure.day - date(1970, 1, 1)).days
            continue
        start = datetime.combine(closure.day, closure.close_at or time(0), tzinfo=zone)
        end = datetime.combine(date.fromordinal(closure.day.toordinal() + 1), time(0), tzinfo=zone)
        closed |= (ts_seconds >= int(start.timestamp())) & (ts_seconds < int(end.timestamp()))
    return closed


def _table_expected(ts_seconds: np.ndarray, table: SessionTable, timeframe_seconds: int) -> np.ndarray:
    """Exchange sessions. Intraday: the bar [ts, ts + timeframe) overlaps a session.
    Daily and longer: the bar's date is a session date."""
    if timeframe_seconds >= DAY:
        return np.isin(ts_seconds // DAY, table.days)
    if len(table.opens) == 0:
        return np.zeros(len(ts_seconds), dtype=bool)
    nxt = np.searchsorted(table.closes, ts_seconds, side="right")  # first session closing after ts
    inside = nxt < len(table.closes)
    opens = table.opens[np.minimum(nxt, len(table.opens) - 1)]
    return inside & (opens < ts_seconds + timeframe_seconds)


def expected_mask(ts_seconds: np.ndarray, calendar: MarketCalendar, timeframe_seconds: int) -> np.ndarray:
    """Is a bar opening at each ts (UTC seconds) expected by the market's calendar?"""
    ts_seconds = np.asarray(ts_seconds, dtype=np.int64)
    if calendar.always_open or len(ts_seconds) == 0:
        return np.ones(len(ts_seconds), dtype=bool)
    table = calendar.sessions
    if table is None:
        return _weekly_expected(ts_seconds, calendar, timeframe_seconds) & ~_closure_mask(
            ts_seconds, calendar, timeframe_seconds
        )
    covered = table.covers(ts_seconds)
    result = np.empty(len(ts_seconds), dtype=bool)
    result[covered] = _table_expected(ts_seconds[covered], table, timeframe_seconds)
    if not covered.all():  # outside exchange-calendars' range: the weekly sessions
        result[~covered] = _weekly_expected(ts_seconds[~covered], calendar, timeframe_seconds)
    return result


def is_open(calendar: MarketCalendar, moment: datetime) -> bool:
    """Is the market trading at `moment` (aware)?"""
    return bool(expected_mask(np.array([int(moment.timestamp())]), calendar, 60)[0])


def session_close(calendar: MarketCalendar, day: date) -> datetime | None:
    """The real close (UTC) of the session on the local date `day` (early closes and
    overrides included), None when the market does not trade that day or never closes."""
    table = calendar.sessions
    epoch_day = (day - date(1970, 1, 1)).days
    if table is not None and table.first_day <= epoch_day <= table.last_day:
        rows = np.flatnonzero(table.days == epoch_day)
        return datetime.fromtimestamp(int(table.closes[rows].max()), tz=UTC) if len(rows) else None
    if calendar.always_open:
        return None
    zone = ZoneInfo(calendar.timezone)
    weekday = day.weekday()
    ends = [end for start, end in calendar.intervals if start != end and end // 1440 == weekday]
    if not ends:
        return None
    close = datetime.combine(day, time(max(ends) % 1440 // 60, max(ends) % 60), tzinfo=zone)
    for closure in calendar.closures:
        if closure.day == day:
            if closure.close_at is None:
                return None
            close = min(close, datetime.combine(day, closure.close_at, tzinfo=zone))
    return close.astimezone(UTC)


def last_close_before(calendar: MarketCalendar, moment: datetime, *, max_days: int = 15) -> datetime | None:
    """The latest session close at or before `moment` (within `max_days` days)."""
    zone = ZoneInfo(calendar.timezone)
    day = moment.astimezone(zone).date()
    for back in range(max_days):
        close = session_close(calendar, date.fromordinal(day.toordinal() - back))
        if close is not None and close <= moment:
            return close
    return None


def market_calendar(market) -> MarketCalendar:
    """The calendar of a `Market` row: its code, active weekly sessions and overrides
    (prefetched `sessions` and `closures` are used when present)."""
    sessions = [s for s in market.sessions.all() if s.is_active]
    closures = tuple(Closure(day=c.day, close_at=c.close_at) for c in market.closures.all())
    if market.calendar_code:
        intervals = weekly_calendar(market.timezone, sessions).intervals
        return exchange_calendar(market.calendar_code, market.timezone, intervals=intervals, closures=closures)
    return weekly_calendar(market.timezone, sessions, closures=closures)


def trading_days(calendar: MarketCalendar, *, first: date, count: int) -> list[date]:
    """The first `count` days on or after `first` on which the market trades."""
    out: list[date] = []
    start = (first - date(1970, 1, 1)).days
    while len(out) < count:
        days = np.arange(start, start + 2 * (count - len(out)) + 14, dtype=np.int64)
        traded = days[expected_mask(days * DAY, calendar, DAY)]
        out.extend(date.fromordinal(date(1970, 1, 1).toordinal() + int(d)) for d in traded[: count - len(out)])
        start = int(days[-1]) + 1
    return out
