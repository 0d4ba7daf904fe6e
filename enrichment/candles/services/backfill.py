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
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Min, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext
from django_q.tasks import async_task

from enrichment.candles.models import BackfillState
from enrichment.candles.services.candle_upsert import candles_upsert
from enrichment.candles.services.feature_compute import features_compute
from enrichment.candles.services.feature_runs import local_series
from enrichment.candles.services.series_refs import timeframe_parse
from enrichment.candles.source_registry import get_source
from etl.errors import ConflictError, DomainError
from etl.models import DeadLetter, MarketData, Symbol

MAX_ATTEMPTS = 5
LEASE = timedelta(minutes=5)
# `locked_by` of a backfill handed to a worker and not yet claimed; any worker may claim it.
QUEUED_BY = "queued"


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
    timeframe_parse(timeframe)
    get_source(source)
    if start >= end:
        raise DomainError(
            gettext("--from (%(start)s) must be before --to (%(end)s)")
            % {"start": f"{start:%Y-%m-%d %H:%M}", "end": f"{end:%Y-%m-%d %H:%M}"},
            code="bad_range",
        )
    if chunk_bars <= 0:
        raise DomainError(gettext("chunk size must be positive"), code="bad_chunk")
    with transaction.atomic():
        state, created = BackfillState.objects.select_for_update().get_or_create(
            symbol=symbol,
            timeframe=timeframe,
            source=source,
            defaults={"range_start": start, "range_end": end, "chunk_bars": chunk_bars},
        )
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
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now) | Q(locked_by__in=[worker, QUEUED_BY]))
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
        raise ConflictError(_held_message(state))
    state.refresh_from_db()
    symbol = Symbol.objects.select_related("market").get(pk=state.symbol_id)
    lease_holder = LeaseHolder(worker=worker, lease=lease, now=now)
    try:
        done = _run_chunks(state, symbol, lease_holder, max_chunks=max_chunks, progress=progress)
    except ChunkFailed as failed:  # the source failed: count the attempt, schedule the retry, release
        _record_failure(state, worker, failed.cause, now())
        state.refresh_from_db()
        return _result(state, error=str(failed.cause))
    finished = done.cursor >= state.range_end
    BackfillState.objects.filter(pk=state.pk, locked_by=worker).update(
        state=BackfillState.State.DONE if finished else BackfillState.State.PENDING, locked_by="", locked_until=None
    )
    if finished and compute:
        features_compute(symbol=symbol, timeframe=state.timeframe)
    state.refresh_from_db()
    return _result(state, chunks=done.chunks)


def _held_message(state: BackfillState) -> str:
    if state.next_retry_at:
        return gettext("backfill %(backfill)s is held by %(worker)s or waits for its retry at %(when)s") % {
            "backfill": state.pk,
            "worker": state.locked_by or gettext("another worker"),
            "when": f"{state.next_retry_at:%Y-%m-%d %H:%M:%S}",
        }
    return gettext("backfill %(backfill)s is held by %(worker)s") % {"backfill": state.pk, "worker": state.locked_by}


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    """The worker that holds a backfill, how long each renewal lasts, and its clock."""

    worker: str
    lease: timedelta
    now: Any


@dataclass(frozen=True, slots=True)
class ChunkProgress:
    chunks: int  # chunks stored by this call
    cursor: datetime  # everything before is stored


class ChunkFailed(Exception):
    """A chunk's source fetch or write failed; `cause` is what the source raised."""

    def __init__(self, cause: Exception):
        super().__init__(str(cause))
        self.cause = cause


def _run_chunks(
    state: BackfillState, symbol: Symbol, holder: LeaseHolder, *, max_chunks: int | None, progress
) -> ChunkProgress:
    """Chunk after chunk from the last completed one, until the end, `max_chunks`, or a lost lease."""
    source = get_source(state.source)
    step = timedelta(seconds=timeframe_parse(state.timeframe) * state.chunk_bars)
    cursor = state.last_completed_ts or state.range_start
    if progress is not None:
        progress.set_total(max(1, math.ceil((state.range_end - cursor) / step)))
    chunks = 0
    while cursor < state.range_end and (max_chunks is None or chunks < max_chunks):
        chunk_end = min(cursor + step, state.range_end)
        try:
            if not _store_chunk(state, symbol, source, holder, start=cursor, end=chunk_end):
                break  # our lease ran out and another worker took over: stop
        except Exception as exc:
            raise ChunkFailed(exc) from exc
        cursor = chunk_end
        chunks += 1
        if progress is not None:
            progress.advance(1)
    return ChunkProgress(chunks=chunks, cursor=cursor)


def _store_chunk(state: BackfillState, symbol: Symbol, source, holder: LeaseHolder, *, start, end) -> bool:
    """One chunk's candles and the new `last_completed_ts` in one transaction; False (and
    nothing kept) when this worker no longer holds the backfill."""
    frame = source.fetch(symbol=symbol, timeframe=state.timeframe, start=start, end=end)
    with transaction.atomic():
        written = candles_upsert(
            symbol=symbol,
            timeframe=state.timeframe,
            frame=frame,
            source=state.source,
            run_ref=f"backfill:{state.pk}",
        )
        held = BackfillState.objects.filter(pk=state.pk, locked_by=holder.worker).update(
            last_completed_ts=end,
            attempts=0,
            next_retry_at=None,
            last_error="",
            rows_written=F("rows_written") + written.inserted + written.updated,
            chunks_done=F("chunks_done") + 1,
            locked_until=holder.now() + holder.lease,
        )
        if not held:
            transaction.set_rollback(True)
    return bool(held)


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
            },
            error=str(exc)[:2000],
            attempts=attempts,
        )


def _result(state: BackfillState, *, chunks: int = 0, error: str = "") -> BackfillResult:
    return BackfillResult(
        state_id=state.pk,
        status=state.state,
        chunks=chunks,
        rows_written=state.rows_written,
        last_completed_ts=state.last_completed_ts,
        error=error or state.last_error,
    )


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
    get_source(source)
    if symbols and timeframes:  # named series need no local candles (a remote source fills them)
        pairs = [(s, tf) for s in symbols for tf in timeframes]
    else:
        pairs = local_series(symbols=symbols, timeframes=timeframes)
    if not pairs:
        raise DomainError(
            gettext("nothing to backfill: name --symbol and --timeframe, or link market_data first"), code="empty"
        )
    if progress is not None:
        progress.set_total(len(pairs))
    results = []
    for symbol, tf in pairs:
        lo, hi = start, end
        if lo is None or hi is None:
            span = MarketData.objects.filter(symbol=symbol, timeframe=tf).aggregate(lo=Min("ts"), hi=Max("ts"))
            lo = lo or span["lo"]
            hi = hi or (span["hi"] + timedelta(seconds=timeframe_parse(tf)) if span["hi"] else timezone.now())
        if lo is None:
            raise DomainError(
                gettext("%(symbol)s %(timeframe)s: give --from (no local candles to take the span from)")
                % {"symbol": symbol, "timeframe": tf},
                code="bad_range",
            )
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


def backfills_queue(*, states: QuerySet[BackfillState]) -> int:
    """Run these backfills now (the ones not done): clear their retry wait and hand each to
    a django-q2 worker once the transaction commits; return how many were queued. One a
    live worker holds, or already queued, is left alone: of many requests at once each
    backfill is queued once. The queued mark lasts Q_RETRY (after that its task is lost)."""
    now = timezone.now()
    with transaction.atomic():
        free = states.exclude(state=BackfillState.State.DONE).filter(
            Q(locked_until__isnull=True) | Q(locked_until__lt=now)
        )
        # FOR UPDATE: a concurrent request waits, then re-reads the row and sees the mark.
        ids = list(free.order_by().select_for_update().values_list("pk", flat=True))
        mark_until = now + timedelta(seconds=settings.Q_CLUSTER.get("retry", 3900))
        BackfillState.objects.filter(pk__in=ids).update(
            next_retry_at=None, locked_by=QUEUED_BY, locked_until=mark_until
        )
    for pk in ids:
        transaction.on_commit(partial(async_task, "enrichment.candles.tasks.backfill_run", pk, group="enrichment"))
    return len(ids)
