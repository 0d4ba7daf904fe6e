"""How far a market's newest candle is behind what its trading sessions
expect by now (the simple version: weekly sessions from the reference data,
no holidays; exchange-calendars can replace `expected_close_missed` later).

Pure computation over a market and its sessions: no query of its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from etl.models import Market


def expected_close_missed(*, market: Market, newest_close: datetime, now: datetime) -> datetime | None:
    """The first moment after `newest_close` and not after `now` at which a bar
    should have closed and none is stored: for a market open all week, the
    newest close itself once it is past; for a session market, the end of the
    first session that ended after it. None: nothing is missing."""
    sessions = [s for s in market.sessions.all() if s.is_active]
    if not sessions or any(s.length == timedelta(days=7) for s in sessions):
        return newest_close if newest_close < now else None
    zone = market.zone
    local = newest_close.astimezone(zone)
    monday = local.date() - timedelta(days=local.weekday())
    closes = []
    # Two weeks from the newest close's week: every weekly session ends at least once in them.
    for week in range(3):
        for session in sessions:
            day = monday + timedelta(days=7 * week + session.end_weekday)
            end = datetime.combine(day, session.end_time, tzinfo=zone)
            if newest_close < end <= now:
                closes.append(end)
    return min(closes) if closes else None
