"""The feature step: bring candles into market_data_v2, then compute each series'
features (`feature_compute`); feature runs recorded, queued, executed and cancelled."""

from __future__ import annotations

import logging
from contextlib import closing
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django_q.tasks import async_task

from enrichment.candles.local_source import MARKET_DATA_SOURCE, MarketDataSource
from enrichment.candles.models import EnrichmentStatus, FeatureRun
from enrichment.candles.services.candle_upsert import candles_upsert
from enrichment.candles.services.feature_batch import SeriesContext, chunk_run, chunks
from enrichment.candles.services.feature_compute import features_compute
from enrichment.candles.services.feature_scan import Scan, scan_horizon, scan_mark_advance, series_scan
from enrichment.candles.services.feature_workers import run_overlapped
from enrichment.candles.services.live import live_markets_ensure
from enrichment.candles.services.schedules import due_close, schedules_ensure
from enrichment.candles.services.series_refs import symbols_from_params, timeframe_parse
from enrichment.candles.source_registry import get_source
from etl.alerts import run_failure_notify
from etl.calendars import market_calendar
from etl.errors import DomainError
from etl.locks import FEATURE_SCHEDULE, session_lock
from etl.models import Market, MarketData, RunStatus, Symbol
from etl.progress import Cancelled, ProgressReporter
from etl.recovery import connection_lost, connection_reset, dead_runs_cancel, write_after_reconnect

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunResult:
    run_id: int | None
    series: int
    candles_inserted: int
    candles_updated: int
    amendments: int
    rows_computed: int
    failed: int
    errors: list[str] = field(default_factory=list)
    unchanged: int = 0  # series of the scope with nothing new: no work and no compute-log row

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def local_series(
    *, symbols: list[Symbol] | None = None, timeframes: list[str] | None = None
) -> list[tuple[Symbol, str]]:
    """(symbol, timeframe) pairs that have linked candles in market_data."""
    qs = MarketData.objects.filter(symbol__isnull=False)
    if symbols:
        qs = qs.filter(symbol__in=symbols)
    if timeframes:
        qs = qs.filter(timeframe__in=timeframes)
    pairs = sorted(set(qs.values_list("symbol_id", "timeframe").distinct()))
    by_id = Symbol.objects.select_related("market").in_bulk([p[0] for p in pairs])
    return [(by_id[sid], tf) for sid, tf in pairs]


def candles_sync_local(*, symbol: Symbol, timeframe: str, full: bool = False, run_ref: str = "") -> dict[str, int]:
    """Copy new and changed market_data candles of one series into market_data_v2: those
    written after its watermark (`feature_scan` says why no overlap is needed)."""
    source = MarketDataSource()
    status = EnrichmentStatus.objects.filter(symbol=symbol, timeframe=timeframe).first()
    since = None
    if not full and status is not None and status.source_synced_until is not None:
        since = status.source_synced_until
    horizon = scan_horizon()
    watermark = source.latest_change(symbol=symbol, timeframe=timeframe)
    if watermark is not None:
        watermark = min(watermark, horizon)
    frame = source.fetch(symbol=symbol, timeframe=timeframe, changed_since=since)
    result = candles_upsert(symbol=symbol, timeframe=timeframe, frame=frame, source=MARKET_DATA_SOURCE, run_ref=run_ref)
    if watermark is not None:
        EnrichmentStatus.objects.update_or_create(
            symbol=symbol, timeframe=timeframe, defaults={"source_synced_until": watermark}
        )
    return {"inserted": result.inserted, "updated": result.updated, "amendments": result.amendments}


def features_run(
    *,
    symbols: list[Symbol] | None = None,
    timeframes: list[str] | None = None,
    full: bool = False,
    source: str = MARKET_DATA_SOURCE,
    run: FeatureRun | None = None,
    progress=None,
    chunked: bool | None = None,
) -> RunResult:
    """The feature step over every linked series (or the ones named): sync candles from
    the source, then compute features. A failing series is recorded and the rest go on.

    From market_data the stale series are found by `feature_scan.series_scan` (the candles
    written since the scope's last run) and done in chunks of many series (`feature_batch`);
    below CHUNK_MIN_SERIES stale series (or with `chunked=False`) one by one, as the live
    poller does. Both give the same rows."""
    for tf in timeframes or []:
        timeframe_parse(tf)
    if source != MARKET_DATA_SOURCE:
        get_source(source)  # unknown codes fail before any work
        return _features_run_per_series(
            local_series(symbols=symbols, timeframes=timeframes), source=source, full=full, run=run, progress=progress
        )
    scan = series_scan(symbol_ids=[s.pk for s in symbols or []] or None, timeframes=timeframes, full=full)
    if progress is not None:
        progress.set_total(len(scan.stale) + scan.fresh)
        if scan.fresh:
            progress.advance(scan.fresh)
    use_chunks = chunked if chunked is not None else len(scan.stale) >= CHUNK_MIN_SERIES
    if use_chunks:
        result = _features_run_chunked(scan, full=full, run=run, progress=progress)
    else:
        pairs = _symbols_of([(s.symbol_id, s.timeframe) for s in scan.stale])
        result = _features_run_per_series(pairs, source=source, full=full, run=run, progress=progress)
    # Every stale series is done or has its failure on its status row (which the next scan
    # reads): from now on only what is written after this scan's horizon needs reading.
    scan_mark_advance(scan)
    return replace(result, series=result.series + scan.fresh, unchanged=scan.fresh)


def _features_run_chunked(scan: Scan, *, full: bool, run: FeatureRun | None, progress) -> RunResult:
    """The stale series of `scan` in chunks of many series; a chunk that fails is done again
    one series at a time, so only the failing series fail."""
    tally = _Tally()
    context = SeriesContext()
    context.symbols_load(scan.stale)
    run_ref = _run_ref(run)
    work = partial(chunk_run, full=full, run=run, run_ref=run_ref, context=context)
    # Two chunks in flight, each its own transaction on its own connection (`feature_workers`);
    # closed on the way out (a cancel, an error raised here): the chunks in flight finish first.

    def counted_late(chunk, _done) -> None:  # in flight when the run stopped: committed, so counted
        if progress is not None:
            progress.advance(len(chunk), check_cancel=False)

    with closing(run_overlapped(chunks(scan.stale), work=work, late=counted_late)) as outcomes:
        for chunk, done in outcomes:
            if isinstance(done, Exception):
                exc = done
                if isinstance(exc, DomainError) or connection_lost(exc):
                    raise exc
                # Which series broke the chunk? Each one again on its own: the others go on.
                logger.warning("feature chunk of %s series failed (%s); running them one by one", len(chunk), exc)
                pairs = _symbols_of([(s.symbol_id, s.timeframe) for s in chunk])
                tally.add_result(
                    _features_run_per_series(pairs, source=MARKET_DATA_SOURCE, full=full, run=run, progress=progress)
                )
                continue
            tally.inserted += done.inserted
            tally.updated += done.updated
            tally.amendments += done.amendments
            tally.rows += done.rows_computed
            if progress is not None:
                progress.advance(len(chunk), check_cancel=False)
                progress.check_cancel()  # between chunks, whatever the reporter's interval
    return tally.result(run, series=len(scan.stale))


# Fewer stale series than this are done one by one: a chunk costs about twenty statements
# whatever its size, one series on its own about thirty, so below a handful the chunk saves
# nothing (and the per-series path is the one the live poller and backfills use).
CHUNK_MIN_SERIES = 4


@dataclass(slots=True)
class _Tally:
    inserted: int = 0
    updated: int = 0
    amendments: int = 0
    rows: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def add_result(self, result: RunResult) -> None:
        self.inserted += result.candles_inserted
        self.updated += result.candles_updated
        self.amendments += result.amendments
        self.rows += result.rows_computed
        self.failed += result.failed
        self.errors.extend(result.errors)

    def result(self, run: FeatureRun | None, *, series: int) -> RunResult:
        return RunResult(
            run_id=run.pk if run else None,
            series=series,
            candles_inserted=self.inserted,
            candles_updated=self.updated,
            amendments=self.amendments,
            rows_computed=self.rows,
            failed=self.failed,
            errors=self.errors[:20],
        )


def _run_ref(run: FeatureRun | None) -> str:
    return f"feature_run:{run.pk}" if run else "features"


def _symbols_of(pairs: list[tuple[int, str]]) -> list[tuple[Symbol, str]]:
    by_id = Symbol.objects.select_related("market").in_bulk([p[0] for p in pairs])
    return [(by_id[sid], tf) for sid, tf in pairs]


def _features_run_per_series(
    pairs: list[tuple[Symbol, str]], *, source: str, full: bool, run: FeatureRun | None, progress
) -> RunResult:
    """Each series on its own: sync its candles (from market_data), compute its features."""
    tally = _Tally()
    run_ref = _run_ref(run)
    for symbol, tf in pairs:
        try:
            if source == MARKET_DATA_SOURCE:
                synced = candles_sync_local(symbol=symbol, timeframe=tf, full=full, run_ref=run_ref)
                tally.inserted += synced["inserted"]
                tally.updated += synced["updated"]
                tally.amendments += synced["amendments"]
            tally.rows += features_compute(symbol=symbol, timeframe=tf, full=full, run=run).rows_written
        except DomainError:
            raise
        except Exception as exc:  # one bad series must not stop the others; it is logged and counted
            if connection_lost(exc):
                raise  # not this series' fault: every series after it would fail the same way
            tally.failed += 1
            tally.errors.append(f"{symbol} {tf}: {exc}")
            # On its status row too (the copy may have failed before the computation recorded
            # anything): the next scan reads the series whatever the scope's mark says.
            EnrichmentStatus.objects.update_or_create(
                symbol=symbol, timeframe=tf, defaults={"state": EnrichmentStatus.State.FAILED, "last_error": str(exc)}
            )
        if progress is not None:
            progress.advance(1)
    return tally.result(run, series=len(pairs))


def feature_run_create(*, symbols: list[str], timeframes: list[str], full: bool, requested_by: str) -> FeatureRun:
    """Record a compute run after checking what it names (DomainError for an unknown symbol
    or timeframe, before any row is written)."""
    symbols_from_params(symbols)
    for timeframe in timeframes:
        timeframe_parse(timeframe)
    params = {"symbols": list(symbols), "timeframes": list(timeframes), "full": full}
    return FeatureRun.objects.create(kind=FeatureRun.Kind.COMPUTE, params=params, requested_by=requested_by)


def feature_run_queue(*, symbols: list[str], timeframes: list[str], full: bool, requested_by: str) -> FeatureRun:
    """Record a compute run and hand it to a django-q2 worker once the row is committed."""
    run = feature_run_create(symbols=symbols, timeframes=timeframes, full=full, requested_by=requested_by)
    transaction.on_commit(
        partial(async_task, "enrichment.candles.tasks.feature_run_execute", run.pk, group="enrichment")
    )
    return run


def feature_runs_cancel(*, runs: QuerySet[FeatureRun]) -> int:
    """Ask the queued or running ones among `runs` to stop between series (one whose
    process is gone is cancelled at once); return how many were asked."""
    asked = runs.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).update(cancel_requested=True)
    dead_runs_cancel(runs=runs)
    return asked


def feature_run_execute(*, run: FeatureRun, progress_bar: bool = False) -> RunResult:
    """Run a queued compute run: status, timings, progress and result on the run record."""
    FeatureRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, started_at=timezone.now())
    params = run.params or {}
    symbols = symbols_from_params(params.get("symbols") or [])
    reporter = ProgressReporter(run, label="features", bar=progress_bar)
    try:
        result = features_run(
            symbols=symbols or None,
            timeframes=params.get("timeframes") or None,
            full=bool(params.get("full")),
            run=run,
            progress=reporter,
        )
    except Cancelled:
        reporter.close()
        FeatureRun.objects.filter(pk=run.pk).update(status=RunStatus.CANCELLED, finished_at=timezone.now())
        raise
    except Exception as exc:
        connection_reset()  # a lost session (a PostgreSQL restart): the failure is recorded on a new one
        reporter.close_quietly()
        error = (connection_lost(exc) or str(exc))[:2000]
        this_run = FeatureRun.objects.filter(pk=run.pk)
        record = partial(this_run.update, status=RunStatus.FAILED, finished_at=timezone.now(), error=error)
        write_after_reconnect(record, what=f"the failure of feature run {run.pk}")
        run_failure_notify(kind="features", run_id=run.pk, summary=f"Feature run #{run.pk} failed: {error}")
        raise
    reporter.close()
    failed = bool(result.failed and not result.rows_computed)
    FeatureRun.objects.filter(pk=run.pk).update(
        status=RunStatus.FAILED if failed else RunStatus.SUCCEEDED,
        finished_at=timezone.now(),
        result=result.to_dict(),
        error="\n".join(result.errors),
    )
    if failed:
        summary = f"Feature run #{run.pk} failed: {result.failed} series failed"
        run_failure_notify(kind="features", run_id=run.pk, summary=summary)
    run.refresh_from_db()
    return result


def features_step(*, options: dict, progress=None) -> dict[str, Any]:
    """Pipeline step "features": sync and compute every linked series from market_data
    (and make sure the default schedules and the markets' live rows exist, now that
    bootstrap has made the markets)."""
    schedules_ensure()
    live_markets_ensure()
    result = features_run(
        symbols=symbols_from_params(options.get("symbols") or []) or None,
        timeframes=options.get("timeframes") or None,
        full=bool(options.get("full_features")),
        progress=progress,
    )
    return result.to_dict()


@dataclass(frozen=True, slots=True)
class ScheduledRun:
    """A scheduled run's outcome: its result, or why it skipped itself."""

    result: RunResult | None
    skipped_because: str = ""

    def to_dict(self) -> dict[str, Any]:
        if self.result is None:
            return {"skipped": True, "reason": self.skipped_because}
        return self.result.to_dict()


def features_scheduled_run(*, market: str | None, now: datetime | None = None) -> ScheduledRun:
    """A scheduled run over one market's symbols (all series without a market). A stock
    market's run happens once per real close (`schedules.due_close`); a run that starts
    while the previous one for the same market still works skips itself: the lock is
    session-level because the run spans many transactions."""
    with session_lock(FEATURE_SCHEDULE, market or "all") as acquired:
        if not acquired:
            return ScheduledRun(result=None, skipped_because="the previous scheduled run is still going")
        due = _due(market, now or timezone.now()) if market else DueRun()
        if due.skipped_because:
            return ScheduledRun(result=None, skipped_because=due.skipped_because)
        symbols = [f"{s.pk}" for s in Symbol.objects.filter(market__code=market)] if market else []
        if market and not symbols:
            return ScheduledRun(result=None, skipped_because=f"no symbols on {market}")
        run = feature_run_create(symbols=symbols, timeframes=[], full=False, requested_by="schedule")
        if market:
            FeatureRun.objects.filter(pk=run.pk).update(params={**run.params, "market": market, "close": due.close})
        return ScheduledRun(result=feature_run_execute(run=run))


@dataclass(frozen=True, slots=True)
class DueRun:
    close: str = ""  # the close a stock market's run is for (ISO), "" when always open
    skipped_because: str = ""


def _due(market_code: str, now: datetime) -> DueRun:
    """Whether a stock market's scheduled run is due now: once per real close."""
    market = Market.objects.prefetch_related("sessions", "closures").filter(code=market_code).first()
    if market is None or market_calendar(market).always_open:
        return DueRun()
    close = due_close(market, now=now)
    if close is None:
        return DueRun(skipped_because=f"{market_code} has not closed in the last two weeks")
    done = FeatureRun.objects.filter(requested_by="schedule", params__market=market_code)
    if done.filter(params__close=close.isoformat()).exists():
        return DueRun(skipped_because=f"already ran after the close at {close.isoformat()}")
    return DueRun(close=close.isoformat())
