"""Live ingestion: for every active symbol of a market with live polling on, fetch the bars
that closed since the newest stored one (catching up after any outage, without gaps or
duplicates), write them to `market_data` and `market_data_v2`, compute the features
incrementally and record each series' freshness (`live_series`).

A market is polled while it trades (its calendar: crypto always, stocks during their
exchange's sessions, never on its holidays) and once more right after the close, for the
last bar. One poll per market at a time (`etl.locks.LIVE_POLL`); within it each series'
writes hold the series lock that feature runs and backfills take too. The provider calls go
through the shared rate limiter and circuit breaker of the provider clients.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import pandas as pd
from django.conf import settings
from django.db import transaction
from django.db.models import F, Max
from django_q.tasks import async_task

from enrichment.candles.freshness import freshness_alert, market_trading
from enrichment.candles.models import FRESHNESS_DEFAULTS, LiveMarket, LiveSeries, MarketDataV2
from enrichment.candles.remote_sources import fetch_scope
from enrichment.candles.services.live_write import Fetched, live_series_record, live_summaries, live_write
from enrichment.candles.services.series_refs import timeframe_parse
from enrichment.candles.source_registry import get_source
from enrichment.providers import clock
from enrichment.providers.errors import ProviderError
from etl.calendars import market_calendar
from etl.locks import LIVE_POLL, session_lock
from etl.models import Market, Symbol

log = logging.getLogger(__name__)

# A series with nothing stored starts this many bars back: enough for every window to warm up.
INITIAL_BARS = 300
# At most this many bars per series and poll: a long outage is caught up over a few polls,
# oldest bars first, so no poll holds a market for long.
MAX_BARS_PER_POLL = 5000
# market_data's precision: v2 keeps the same values, so that a later sync from market_data
# finds nothing changed.
PRICE_PLACES, VOLUME_PLACES = 10, 8
# Series whose bars are written (and features computed) together, in one transaction.
WRITE_BATCH = 100


@dataclass(frozen=True, slots=True)
class MarketPoll:
    market: str
    polled: int = 0
    bars: int = 0
    failed: int = 0
    skipped_because: str = ""


@dataclass(frozen=True, slots=True)
class PollResult:
    markets: list[MarketPoll] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped_because: str = ""

    @property
    def bars(self) -> int:
        return sum(m.bars for m in self.markets)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bars": self.bars}


@dataclass(frozen=True, slots=True)
class SeriesPoll:
    bars: int
    error: str = ""


def live_enabled() -> bool:
    return bool(getattr(settings, "DATA_ENRICHMENT_ENABLED", True))


def live_markets_ensure() -> int:
    """A (disabled) live row for each market that has none, with the freshness defaults of
    its asset class; return how many were created."""
    created = 0
    for market in Market.objects.filter(live__isnull=True).select_related("default_asset_class"):
        code = market.default_asset_class.code if market.default_asset_class_id else ""
        target, critical = FRESHNESS_DEFAULTS["CRYPTO" if code.startswith("CRYPTO") else "STOCK"]
        LiveMarket.objects.create(market=market, freshness_target_seconds=target, critical_seconds=critical)
        created += 1
    return created


def live_poll_queue(*, markets: list[str]) -> list[str]:
    """Hand a poll of `markets` to a worker once the caller's transaction commits; return them."""
    if markets:
        transaction.on_commit(
            partial(async_task, "enrichment.candles.tasks.live_poll", markets, group="enrichment-live")
        )
    return markets


def live_poll(
    *, now: datetime | None = None, markets: list[str] | None = None, shard: tuple[int, int] = (0, 1)
) -> PollResult:
    """Poll every enabled market (or the ones named): new closed bars in, features computed,
    freshness recorded. Nothing at all while DATA_ENRICHMENT_ENABLED is off. `shard` (i, n)
    takes the symbols whose id % n == i, so that n workers can share a big market."""
    if not live_enabled():
        return PollResult(skipped_because="DATA_ENRICHMENT_ENABLED is off")
    now = now or clock.now()
    lives = LiveMarket.objects.filter(is_enabled=True, market__is_active=True).select_related("market")
    if markets:
        lives = lives.filter(market__code__in=markets)
    results, errors = [], []
    for live in lives.prefetch_related("market__sessions", "market__closures"):
        with session_lock(LIVE_POLL, f"{live.market.code}#{shard[0]}/{shard[1]}") as acquired:
            if not acquired:
                results.append(MarketPoll(live.market.code, skipped_because="the previous poll is still going"))
                continue
            result, market_errors = _poll_market(live, now, shard)
        results.append(result)
        errors.extend(market_errors)
    freshness_alert(now=now)
    return PollResult(markets=results, errors=errors[:50])


def _poll_market(live: LiveMarket, now: datetime, shard: tuple[int, int]) -> tuple[MarketPoll, list[str]]:
    market, timeframe = live.market, live.timeframe
    seconds = timeframe_parse(timeframe)
    calendar = market_calendar(market)
    if not market_trading(calendar, now=now, timeframe_seconds=seconds):
        return MarketPoll(market.code, skipped_because="the market is closed"), []
    end = pd.Timestamp(int(now.timestamp()) // seconds * seconds, unit="s", tz="UTC").to_pydatetime()
    index, count = shard
    symbols = list(
        Symbol.objects.annotate(shard=F("id") % count)
        .filter(market=market, is_active=True, shard=index)
        .exclude(live_series__timeframe=timeframe, live_series__is_enabled=False)
        .select_related("market", "asset_class")
        .order_by("pk")
    )
    newest = _newest_bars(symbols, timeframe)
    source = get_source(live.source)
    # A source that can spreads its statistics calls over their period (remote_sources.binance_extras).
    options = {"spread_extras": True} if getattr(source, "spreads_extras", False) else {}
    writer = _Writer(timeframe=timeframe, seconds=seconds, calendar=calendar)
    polled = 0
    with fetch_scope(symbols):
        for symbol in symbols:
            last = newest.get(symbol.pk)
            start = last + timedelta(seconds=seconds) if last else end - timedelta(seconds=seconds * INITIAL_BARS)
            if start >= end:
                continue
            polled += 1
            until = min(end, start + timedelta(seconds=seconds * MAX_BARS_PER_POLL))
            polled_at = clock.now()
            try:
                item = _fetch(source, options, live, symbol, start=start, end=until, polled_at=polled_at)
            except Exception as exc:  # one bad series must not stop the market's others; it is logged and counted
                if not isinstance(exc, ProviderError):
                    log.exception("live poll of %s failed", symbol)
                writer.failed(symbol, polled_at, str(exc))
                continue
            if item is None:
                writer.nothing_new(symbol, polled_at)
            else:
                writer.add(item)
        writer.flush()
    writer.finish()
    return MarketPoll(market.code, polled=polled, bars=writer.bars, failed=len(writer.errors)), writer.errors


class _Writer:
    """Collects a poll's fetched series and writes them WRITE_BATCH at a time (bars, features
    and `live_series` rows); the summaries once at the end, off the freshness path."""

    def __init__(self, *, timeframe: str, seconds: int, calendar):
        self.where = {"timeframe": timeframe, "seconds": seconds}
        self.calendar = calendar
        self.batch: list[Fetched] = []
        self.records: list[tuple] = []
        self.stored: list[Symbol] = []
        self.tails: list = []
        self.spent = 0.0
        self.bars = 0
        self.errors: list[str] = []

    def failed(self, symbol: Symbol, polled_at: datetime, error: str) -> None:
        self.errors.append(f"{symbol}: {error}")
        self.records.append((symbol, polled_at, error[:2000], None, None))

    def nothing_new(self, symbol: Symbol, polled_at: datetime) -> None:
        self.records.append((symbol, polled_at, "", None, None))

    def add(self, item: Fetched) -> None:
        self.batch.append(item)
        if len(self.batch) >= WRITE_BATCH:
            self.flush()

    def flush(self) -> None:
        written = live_write(self.batch, calendar=self.calendar, **self.where)
        self.tails += written.tails
        self.spent += written.seconds_spent
        for item in self.batch:
            error = written.errors.get(item.symbol.pk, "")
            if error:
                self.failed(item.symbol, item.polled_at, error)
                continue
            self.stored.append(item.symbol)
            self.bars += len(item.frame)
            self.records.append((item.symbol, item.polled_at, "", item.frame, written.stored_at[item.symbol.pk]))
        live_series_record(self.records, **self.where)
        self.batch, self.records = [], []

    def finish(self) -> None:
        # The summaries (daily quality, status, compute log) once all the features are stored.
        live_summaries(self.stored, self.tails, calendar=self.calendar, seconds_spent=self.spent, **self.where)


def _fetch(
    source, options: dict, live: LiveMarket, symbol: Symbol, *, start: datetime, end: datetime, polled_at: datetime
) -> Fetched | None:
    """The series' bars in [start, end) at market_data's precision (None: no new bar), with the
    extras a later poll brought for bars stored before."""
    frame = source.fetch(symbol=symbol, timeframe=live.timeframe, start=start, end=end, **options)
    # Taken off the frame: pandas deep-copies a frame's attrs (here a DataFrame) at every operation.
    attrs, frame.attrs = frame.attrs, {}
    provider = attrs.get("provider", live.source)
    earlier = attrs["earlier_extras"].frame if "earlier_extras" in attrs else None
    frame = _rounded(frame)  # a source's frame is normalised already
    frame = frame[(frame["ts"] >= pd.Timestamp(start)) & (frame["ts"] < pd.Timestamp(end))].reset_index(drop=True)
    if frame.empty:
        return None
    if earlier is not None and "taker_buy_volume" in earlier:
        earlier = earlier.assign(taker_buy_volume=earlier["taker_buy_volume"].round(VOLUME_PLACES))
    return Fetched(symbol=symbol, frame=frame, provider=provider, polled_at=polled_at, earlier=earlier)


def _newest_bars(symbols: list[Symbol], timeframe: str) -> dict[int, datetime]:
    """The newest stored bar of each series: from live_series, else market_data_v2 (one query each)."""
    ids = [s.pk for s in symbols]
    known = dict(
        LiveSeries.objects.filter(symbol_id__in=ids, timeframe=timeframe, last_bar_ts__isnull=False).values_list(
            "symbol_id", "last_bar_ts"
        )
    )
    missing = [i for i in ids if i not in known]
    if missing:
        stored = (
            MarketDataV2.objects.filter(symbol_id__in=missing, timeframe=timeframe)
            .values("symbol_id")
            .annotate(newest=Max("ts"))
        )
        known.update({row["symbol_id"]: row["newest"] for row in stored})
    return known


def _rounded(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in ("open", "high", "low", "close"):
        out[column] = out[column].round(PRICE_PLACES)
    for column in ("volume", "taker_buy_volume", "quote_volume"):
        out[column] = out[column].round(VOLUME_PLACES)
    return out
