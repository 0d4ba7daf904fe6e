"""Resumable backfill of one series from one candle source, chunk by chunk.

`backfill_state` holds, per symbol/timeframe/source, the range, the last completed
timestamp (everything before it is stored), attempts and the next retry. A chunk's
candles and the new `last_completed_ts` commit in the same transaction, so a worker
killed mid-chunk loses only that chunk: the next worker (once the dead one's lease
has run out) starts right after `last_completed_ts`, and the upsert makes any
re-fetched bar a no-op. No gaps, no duplicates.
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F as DbF
from django.db.models import Max, Min, Q
from django.utils import timezone

from enrichment.models.candles import BackfillState
from enrichment.services.candles import candles_upsert
from enrichment.services.features import features_compute, parse_timeframe
from enrichment.sources import get_source
from etl.errors import ConflictError, DomainError
from etl.models import DeadLetter, Symbol

MAX_ATTEMPTS = 5
LEASE = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class BackfillResult:
    state_id: int
    status: str
    chunks: int
    rows_written: int
    last_completed_ts: datetime | None
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def retry_delay(attempts: int) -> timedelta:
    """Exponential: 30 s, 1 min, 2 min, ... at most an hour."""
    return timedelta(seconds=min(3600, 30 * 2 ** max(0, attempts - 1)))


def backfill_plan(
    *, symbol: Symbol, timeframe: str, source: str, start: datetime, end: datetime, chunk_bars: int = 1000
) -> BackfillState:
    """Create or widen the backfill of one series. An existing state keeps its progress
    when the new range only extends the end; an earlier start rewinds it (re-fetching is
    harmless: stored bars that did not change are not written)."""
    parse_timeframe(timeframe)
    get_source(source)
    if start >= end:
        raise DomainError(
            f"--from ({start:%Y-%m-%d %H:%M}) must be before --to ({end:%Y-%m-%d %H:%M})", code="bad_range"
        )
    if chunk_bars <= 0:
        raise DomainError("chunk size must be positive", code="bad_chunk")
    with transaction.atomic():
        state, created = BackfillState.objects.select_for_update().get_or_create(
            symbol=symbol, timeframe=timeframe, source=source,
            defaults={"range_start": start, "range_end": end, "chunk_bars": chunk_bars},
        )  # fmt: skip
        if not created:
            if start < state.range_start:
                state.range_start, state.last_completed_ts = start, None
            if end > state.range_end:
                state.range_end = end
            state.chunk_bars = chunk_bars
            if state.last_completed_ts is None or state.last_completed_ts < state.range_end:
                if state.state == BackfillState.State.DONE:
                    state.state = BackfillState.State.PENDING
            state.save()
    return state


def _claim(state: BackfillState, worker: str, now: datetime, lease: timedelta) -> bool:
    """Take the state for this worker with one conditional UPDATE: only when nobody holds a
    live lease and any retry delay has passed."""
    claimed = (
        BackfillState.objects.filter(pk=state.pk)
        .exclude(state=BackfillState.State.DONE)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now) | Q(locked_by=worker))
        .filter(Q(next_retry_at__isnull=True) | Q(next_retry_at__lte=now))
        .update(state=BackfillState.State.RUNNING, locked_by=worker, locked_until=now + lease)
    )
    return claimed == 1


def backfill_run(
    *,
    state: BackfillState,
    worker: str | None = None,
    max_chunks: int | None = None,
    compute: bool = True,
    progress=None,
    lease: timedelta = LEASE,
    now=timezone.now,
) -> BackfillResult:
    """Fetch and store the remaining chunks of one backfill, then compute the series' features.
    Raises ConflictError when another live worker holds it or its retry time has not come."""
    worker = worker or default_worker()
    if not _claim(state, worker, now(), lease):
        state.refresh_from_db()
        if state.state == BackfillState.State.DONE:
            return _result(state)
        raise ConflictError(
            f"backfill {state.pk} is held by {state.locked_by or 'another worker'} or waits for its retry at "
            f"{state.next_retry_at:%Y-%m-%d %H:%M:%S}"
            if state.next_retry_at
            else f"backfill {state.pk} is held by {state.locked_by}"
        )
    state.refresh_from_db()
    source = get_source(state.source)
    step = timedelta(seconds=parse_timeframe(state.timeframe) * state.chunk_bars)
    symbol = Symbol.objects.select_related("market").get(pk=state.symbol_id)
    cursor = state.last_completed_ts or state.range_start
    if progress is not None:
        progress.set_total(max(1, math.ceil((state.range_end - cursor) / step)))
    chunks = 0
    while cursor < state.range_end and (max_chunks is None or chunks < max_chunks):
        chunk_end = min(cursor + step, state.range_end)
        try:
            frame = source.fetch(symbol=symbol, timeframe=state.timeframe, start=cursor, end=chunk_end)
            with transaction.atomic():
                written = candles_upsert(
                    symbol=symbol, timeframe=state.timeframe, frame=frame, source=state.source,
                    run_ref=f"backfill:{state.pk}",
                )  # fmt: skip
                held = BackfillState.objects.filter(pk=state.pk, locked_by=worker).update(
                    last_completed_ts=chunk_end, attempts=0, next_retry_at=None, last_error="",
                    rows_written=DbF("rows_written") + written.inserted + written.updated,
                    chunks_done=DbF("chunks_done") + 1, locked_until=now() + lease,
                )  # fmt: skip
                if not held:  # our lease ran out and another worker took over: undo this chunk, stop
                    transaction.set_rollback(True)
                    break
        except Exception as exc:  # the source failed: count the attempt, schedule the retry, release
            _record_failure(state, worker, exc, now())
            state.refresh_from_db()
            return _result(state, error=str(exc))
        cursor = chunk_end
        chunks += 1
        if progress is not None:
            progress.advance(1)
    finished = cursor >= state.range_end
    BackfillState.objects.filter(pk=state.pk, locked_by=worker).update(
        state=BackfillState.State.DONE if finished else BackfillState.State.PENDING, locked_by="", locked_until=None
    )
    if finished and compute:
        features_compute(symbol=symbol, timeframe=state.timeframe)
    state.refresh_from_db()
    return _result(state, chunks=chunks)


def _record_failure(state: BackfillState, worker: str, exc: Exception, now: datetime) -> None:
    current = BackfillState.objects.get(pk=state.pk)
    attempts = current.attempts + 1
    exhausted = attempts >= MAX_ATTEMPTS or getattr(exc, "permanent", False)
    BackfillState.objects.filter(pk=state.pk, locked_by=worker).update(
        attempts=attempts,
        last_error=str(exc)[:2000],
        next_retry_at=None if exhausted else now + retry_delay(attempts),
        state=BackfillState.State.FAILED if exhausted else BackfillState.State.PENDING,
        locked_by="",
        locked_until=None,
    )
    if exhausted:
        DeadLetter.objects.create(
            kind="backfill",
            ref=f"{current.symbol_id} {current.timeframe} {current.source}",
            payload={
                "backfill_state_id": current.pk,
                "from": str(current.last_completed_ts or current.range_start),
                "to": str(current.range_end),
            },  # fmt: skip
            error=str(exc)[:2000],
            attempts=attempts,
        )


def _result(state: BackfillState, *, chunks: int = 0, error: str = "") -> BackfillResult:
    return BackfillResult(
        state_id=state.pk, status=state.state, chunks=chunks, rows_written=state.rows_written,
        last_completed_ts=state.last_completed_ts, error=error or state.last_error,
    )  # fmt: skip


def backfill_due(*, now=timezone.now) -> list[BackfillState]:
    """Backfills a scheduled run should pick up: pending, or failed-but-retrying, whose time has come."""
    moment = now()
    return list(
        BackfillState.objects.filter(state__in=[BackfillState.State.PENDING, BackfillState.State.RUNNING])
        .filter(Q(next_retry_at__isnull=True) | Q(next_retry_at__lte=moment))
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=moment))
    )


def backfill_start(
    *,
    symbols: list[Symbol] | None,
    timeframes: list[str] | None,
    source: str,
    start: datetime | None,
    end: datetime | None,
    chunk_bars: int = 1000,
    progress=None,
) -> dict[str, Any]:
    """Plan and run the backfill of every named series (all linked market_data series when
    none are named). Without --from/--to the local source's own span is used."""
    from enrichment.services.features import local_series
    from etl.models import MarketData

    get_source(source)
    if symbols and timeframes:  # named series need no local candles (a remote source fills them)
        pairs = [(s, tf) for s in symbols for tf in timeframes]
    else:
        pairs = local_series(symbols=symbols, timeframes=timeframes)
    if not pairs:
        raise DomainError("nothing to backfill: name --symbol and --timeframe, or link market_data first", code="empty")
    if progress is not None:
        progress.set_total(len(pairs))
    results = []
    for symbol, tf in pairs:
        lo, hi = start, end
        if lo is None or hi is None:
            span = MarketData.objects.filter(symbol=symbol, timeframe=tf).aggregate(lo=Min("ts"), hi=Max("ts"))
            lo = lo or span["lo"]
            hi = hi or (span["hi"] + timedelta(seconds=parse_timeframe(tf)) if span["hi"] else timezone.now())
        if lo is None:
            raise DomainError(f"{symbol} {tf}: give --from (no local candles to take the span from)", code="bad_range")
        state = backfill_plan(symbol=symbol, timeframe=tf, source=source, start=lo, end=hi, chunk_bars=chunk_bars)
        try:
            results.append(backfill_run(state=state).to_dict())
        except ConflictError as exc:
            results.append({"state_id": state.pk, "status": "skipped", "error": exc.message})
        if progress is not None:
            progress.advance(1)
    return {
        "series": len(results),
        "done": sum(r["status"] == "done" for r in results),
        "rows_written": sum(r.get("rows_written", 0) for r in results),
        "results": results,
    }
