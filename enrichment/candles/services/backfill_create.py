"""Creating backfills from a door (the admin's "Create backfills", POST /api/runs/backfills/):
plan each named series and hand it to the workers. The command (`backfill`) runs them in its
own process through `backfill_start` instead."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone
from django.utils.translation import gettext

from enrichment.candles.models import BackfillState
from enrichment.candles.services.backfill import backfill_plan, backfills_queue
from enrichment.candles.services.series_refs import timeframe_parse
from enrichment.candles.source_registry import get_source
from etl.errors import DomainError
from etl.models import MarketData, Symbol

# A backfill runs chunk after chunk over its range: a range of more chunks than this would hold a
# worker for hours on end (a typo in a year), so it is refused; split it, or raise chunk_bars.
MAX_CHUNKS = 10_000
MAX_SERIES = 1_000  # symbols × timeframes in one request


@dataclass(frozen=True, slots=True)
class BackfillsCreated:
    states: list[BackfillState]
    queued: int  # handed to a worker now (a backfill already done or held by a live worker is not)


def series_span(*, symbol: Symbol, timeframe: str, start: datetime | None, end: datetime | None):
    """The range to backfill: what was asked, else the series' local candles' span (to now when
    it has none after `start`). A DomainError when there is nothing to take the start from."""
    if start is not None and end is not None:
        return start, end
    span = MarketData.objects.filter(symbol=symbol, timeframe=timeframe).aggregate(lo=Min("ts"), hi=Max("ts"))
    lo = start or span["lo"]
    hi = end or (span["hi"] + timedelta(seconds=timeframe_parse(timeframe)) if span["hi"] else timezone.now())
    if lo is None:
        raise DomainError(
            gettext("%(series)s: give a start (no local candles to take it from)")
            % {"series": f"{symbol} {timeframe}"},
            code="bad_range",
        )
    return lo, hi


def _chunks_check(*, timeframe: str, start: datetime, end: datetime, chunk_bars: int) -> None:
    chunks = math.ceil((end - start).total_seconds() / (timeframe_parse(timeframe) * chunk_bars))
    if chunks > MAX_CHUNKS:
        raise DomainError(
            gettext(
                "%(timeframe)s from %(start)s to %(end)s is %(chunks)s chunks of %(bars)s bars: at most %(most)s "
                "(shorten the range or raise chunk_bars)"
            )
            % {
                "timeframe": timeframe,
                "start": f"{start:%Y-%m-%d}",
                "end": f"{end:%Y-%m-%d}",
                "chunks": chunks,
                "bars": chunk_bars,
                "most": MAX_CHUNKS,
            },
            code="range_too_long",
        )


def backfills_create(
    *,
    symbols: list[Symbol],
    timeframes: list[str],
    source: str,
    start: datetime | None = None,
    end: datetime | None = None,
    chunk_bars: int = 1000,
) -> BackfillsCreated:
    """Plan the backfill of every symbol × timeframe from `source` (an existing one is widened,
    keeping its progress) and queue them on the workers once the caller's transaction commits."""
    get_source(source)
    if not symbols or not timeframes:
        raise DomainError(gettext("name at least one symbol and one timeframe"), code="empty")
    if len(symbols) * len(timeframes) > MAX_SERIES:
        raise DomainError(
            gettext("at most %(most)s series (symbols × timeframes) at once") % {"most": MAX_SERIES},
            code="too_many_series",
        )
    if chunk_bars <= 0:
        raise DomainError(gettext("chunk size must be positive"), code="bad_chunk")
    plans = []
    for symbol in symbols:
        for timeframe in timeframes:
            lo, hi = series_span(symbol=symbol, timeframe=timeframe, start=start, end=end)
            if lo < hi:
                _chunks_check(timeframe=timeframe, start=lo, end=hi, chunk_bars=chunk_bars)
            plans.append((symbol, timeframe, lo, hi))
    with transaction.atomic():
        states = [
            backfill_plan(symbol=symbol, timeframe=tf, source=source, start=lo, end=hi, chunk_bars=chunk_bars)
            for symbol, tf, lo, hi in plans
        ]
        queued = backfills_queue(states=BackfillState.objects.filter(pk__in=[state.pk for state in states]))
    return BackfillsCreated(states=states, queued=queued)
