"""Freshness of the live series: how long after a bar's close its features were stored, or,
while a market trades and the newest closed bar is not stored yet, how long that bar has been
waiting. Measured against each market's target (crypto 30 s, stocks 60 s by default) and
critical threshold; read from `live_series` (one small row per series), one query per market.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction

from enrichment.candles.feature_list import timeframe_seconds
from enrichment.candles.models import LiveMarket, LiveSeries
from enrichment.providers import clock
from etl.alerts import run_failure_notify
from etl.calendars import MarketCalendar, is_open, market_calendar
from etl.models import Symbol

log = logging.getLogger(__name__)

STALEST = 10
# Lag histogram buckets (seconds), around the 30 s / 60 s targets.
LAG_BUCKETS = (5, 10, 15, 30, 60, 120, 300, 900, 3600)
ALERT_EVERY = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class SeriesFreshness:
    symbol: str
    market: str
    timeframe: str
    lag_seconds: float | None
    target_seconds: int
    critical_seconds: int
    last_bar_ts: datetime | None

    @property
    def stale(self) -> bool:
        return self.lag_seconds is None or self.lag_seconds > self.target_seconds

    @property
    def critical(self) -> bool:
        return self.lag_seconds is not None and self.lag_seconds > self.critical_seconds

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stale": self.stale, "critical": self.critical}


@dataclass(frozen=True, slots=True)
class MarketFreshness:
    market: str
    target_seconds: int
    critical_seconds: int
    fresh: int
    stale: int
    critical: int
    buckets: list[int]  # series with lag <= each of LAG_BUCKETS (cumulative)
    lag_sum: float
    stalest: list[SeriesFreshness] = field(default_factory=list)


def market_trading(calendar: MarketCalendar, *, now: datetime, timeframe_seconds: int) -> bool:
    """Trading now, or the bar that has just closed was in the session (the close's last bar)."""
    return is_open(calendar, now) or is_open(calendar, now - timedelta(seconds=timeframe_seconds))


def _lag_sql(trading: bool) -> str:
    """The series' lag: the last one measured, or, while the market trades and the newest
    closed bar (closing at %(due)s) is missing, how long the first missing one has waited
    since its close."""
    waiting = "EXTRACT(EPOCH FROM (%(now)s - (l.last_bar_ts + 2 * %(bar)s)))"
    if not trading:
        return "l.last_lag_seconds"
    return (
        "CASE WHEN l.last_bar_ts IS NULL THEN NULL WHEN l.last_bar_ts + %(bar)s < %(due)s"
        f" THEN GREATEST(COALESCE(l.last_lag_seconds, 0), {waiting}) ELSE l.last_lag_seconds END"
    )


def _market_rows(live: LiveMarket, now: datetime) -> MarketFreshness:
    seconds = timeframe_seconds(live.timeframe)
    trading = market_trading(market_calendar(live.market), now=now, timeframe_seconds=seconds)
    due = datetime.fromtimestamp(int(now.timestamp()) // seconds * seconds, tz=now.tzinfo)
    lag = _lag_sql(trading)
    params = {"now": now, "due": due, "bar": timedelta(seconds=seconds), "market": live.market_id}
    params |= {"tf": live.timeframe, "target": live.freshness_target_seconds, "critical": live.critical_seconds}
    buckets = ", ".join(f"count(*) FILTER (WHERE lag <= {b})" for b in LAG_BUCKETS)
    with connection.cursor() as cur:
        cur.execute(
            f"""
            WITH series AS (
                SELECT l.symbol_id, l.last_bar_ts, {lag} AS lag
                FROM live_series l JOIN symbols s ON s.id = l.symbol_id
                WHERE s.market_id = %(market)s AND l.timeframe = %(tf)s AND l.is_enabled AND s.is_active
            )
            SELECT count(*) FILTER (WHERE lag <= %(target)s), count(*) FILTER (WHERE lag IS NULL OR lag > %(target)s),
                   count(*) FILTER (WHERE lag > %(critical)s), COALESCE(sum(lag), 0), {buckets}
            FROM series
            """,  # noqa: S608 - the interpolated parts are constants
            params,
        )
        fresh, stale, critical, lag_sum, *cumulative = cur.fetchone()
        cur.execute(
            f"""
            SELECT l.symbol_id, l.last_bar_ts, {lag} AS lag
            FROM live_series l JOIN symbols s ON s.id = l.symbol_id
            WHERE s.market_id = %(market)s AND l.timeframe = %(tf)s AND l.is_enabled AND s.is_active
            ORDER BY lag DESC NULLS FIRST LIMIT {STALEST}
            """,  # noqa: S608 - the interpolated parts are constants
            params,
        )
        worst = cur.fetchall()
    tickers = dict(Symbol.objects.filter(pk__in=[r[0] for r in worst]).values_list("pk", "ticker"))
    stalest = [
        SeriesFreshness(
            symbol=tickers.get(symbol_id, str(symbol_id)),
            market=live.market.code,
            timeframe=live.timeframe,
            lag_seconds=None if value is None else round(float(value), 3),
            target_seconds=live.freshness_target_seconds,
            critical_seconds=live.critical_seconds,
            last_bar_ts=last_bar,
        )
        for symbol_id, last_bar, value in worst
    ]
    return MarketFreshness(
        market=live.market.code,
        target_seconds=live.freshness_target_seconds,
        critical_seconds=live.critical_seconds,
        fresh=fresh,
        stale=stale,
        critical=critical,
        buckets=list(cumulative),
        lag_sum=float(lag_sum),
        stalest=stalest,
    )


def freshness_summary(*, now: datetime | None = None) -> list[MarketFreshness]:
    """Per enabled live market: fresh, stale and critical series, the lag histogram, the stalest."""
    now = now or clock.now()
    lives = LiveMarket.objects.filter(is_enabled=True).select_related("market")
    return [_market_rows(live, now) for live in lives.prefetch_related("market__sessions", "market__closures")]


def freshness_for_symbol(*, symbol: Symbol, now: datetime | None = None) -> list[dict[str, Any]]:
    """Each live series of one symbol with its lag, target and state."""
    now = now or clock.now()
    live = LiveMarket.objects.filter(market_id=symbol.market_id).first()
    out = []
    for series in LiveSeries.objects.filter(symbol=symbol).order_by("timeframe"):
        lag = series.last_lag_seconds
        if series.last_bar_ts is not None and live is not None:
            seconds = timeframe_seconds(series.timeframe)
            due = datetime.fromtimestamp(int(now.timestamp()) // seconds * seconds, tz=now.tzinfo)
            if series.last_bar_ts + timedelta(seconds=seconds) < due and live.is_enabled:
                waited = now - (series.last_bar_ts + timedelta(seconds=2 * seconds))
                lag = max(lag or 0.0, waited.total_seconds())
        out.append(
            SeriesFreshness(
                symbol=symbol.ticker,
                market=symbol.market.code,
                timeframe=series.timeframe,
                lag_seconds=lag,
                target_seconds=live.freshness_target_seconds if live else 60,
                critical_seconds=live.critical_seconds if live else 300,
                last_bar_ts=series.last_bar_ts,
            ).to_dict()
            | {"enabled": series.is_enabled and bool(live and live.is_enabled), "last_error": series.last_error}
        )
    return out


def freshness_alert(*, now: datetime | None = None) -> int:
    """Alert (mail / Slack, as for failed runs) once an hour per market while series are past
    their critical lag; return how many series were reported."""
    now = now or clock.now()
    reported = 0
    for market in freshness_summary(now=now):
        if not market.critical:
            continue
        with transaction.atomic():
            live = LiveMarket.objects.select_for_update().get(market__code=market.market)
            recent = LiveSeries.objects.filter(
                symbol__market_id=live.market_id, alerted_at__gt=now - ALERT_EVERY
            ).exists()
            if recent:
                continue
            worst = ", ".join(f"{s.symbol} {s.lag_seconds:.0f} s" for s in market.stalest if s.critical)
            summary = (
                f"{market.critical} live series on {market.market} are past the critical lag of "
                f"{market.critical_seconds} s (worst: {worst})"
            )
            log.error("freshness: %s", summary)
            run_failure_notify(kind="freshness", run_id=market.market, summary=summary)
            LiveSeries.objects.filter(symbol__market_id=live.market_id).update(alerted_at=now)
            reported += market.critical
    return reported
