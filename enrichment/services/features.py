"""The feature step: bring candles into market_data_v2, compute features and quality
incrementally, keep status, daily quality metrics and the compute log.

Incremental: the first row whose features are stale (`features_revision` differs
from `revision`: new or restated bars) and everything after it are recomputed,
reading only the context the longest window needs before it; the recursions
continue from the state stored in the row before. A test checks that this gives
the same bits as a full recompute.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from django.db import connection, transaction
from django.utils import timezone

from enrichment import features as F
from enrichment import quality as Q
from enrichment.models.candles import FEATURE_COLUMNS, EnrichmentComputeLog, EnrichmentStatus, FeatureRun
from enrichment.services.candles import CANDLE_COLUMNS, candles_upsert, copy_into, series_lock
from enrichment.sources import LOCAL, MarketDataSource, get_source
from etl.errors import DomainError
from etl.models import Market, MarketData, RunStatus, Symbol

# Re-read market_data a little before the last watermark: an import that committed late
# may carry an older updated_at. Re-reading is free: unchanged bars are not written.
WATERMARK_OVERLAP = timedelta(hours=1)
WRITE_COLUMNS = (*FEATURE_COLUMNS, "quality_score", "quality_flags")


@dataclass(frozen=True, slots=True)
class ComputeResult:
    symbol_id: int
    timeframe: str
    mode: str
    rows_read: int
    rows_written: int
    first_ts: datetime | None
    last_ts: datetime | None
    duration_ms: float
    log_id: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def market_calendar(market: Market) -> Q.MarketCalendar:
    return Q.calendar_from_sessions(market.timezone, market.sessions.filter(is_active=True))


def parse_timeframe(timeframe: str) -> int:
    try:
        return F.timeframe_seconds(timeframe)
    except ValueError as exc:
        raise DomainError(str(exc), code="bad_timeframe") from None


def features_compute(
    *, symbol: Symbol, timeframe: str, full: bool = False, run: FeatureRun | None = None
) -> ComputeResult:
    """Compute features, quality score and flags for the stale tail of one series (all of it
    with `full`), then refresh its daily quality metrics and status. Logs the computation."""
    tf = parse_timeframe(timeframe)
    calendar = market_calendar(symbol.market)
    started = time.perf_counter()
    try:
        with transaction.atomic(), connection.cursor() as cur:
            series_lock(cur, symbol_id=symbol.pk, timeframe=timeframe)
            mode, rows_read, written, first_ts, last_ts = _compute_tail(cur, symbol, timeframe, tf, calendar, full)
            if written:
                _refresh_metrics(cur, symbol, timeframe, tf, calendar, first_ts)
            _refresh_status(cur, symbol, timeframe, error="")
    except Exception as exc:
        EnrichmentStatus.objects.update_or_create(
            symbol=symbol, timeframe=timeframe,
            defaults={"state": EnrichmentStatus.State.FAILED, "last_error": str(exc)[:2000]},
        )  # fmt: skip
        EnrichmentComputeLog.objects.create(
            run=run, symbol=symbol, timeframe=timeframe, mode="full" if full else "incremental",
            succeeded=False, error=str(exc)[:2000], duration_ms=(time.perf_counter() - started) * 1000,
        )  # fmt: skip
        raise
    duration = (time.perf_counter() - started) * 1000
    log = EnrichmentComputeLog.objects.create(
        run=run, symbol=symbol, timeframe=timeframe, mode=mode, rows_read=rows_read, rows_written=written,
        first_ts=first_ts, last_ts=last_ts, duration_ms=duration,
    )  # fmt: skip
    return ComputeResult(
        symbol_id=symbol.pk, timeframe=timeframe, mode=mode, rows_read=rows_read, rows_written=written,
        first_ts=first_ts, last_ts=last_ts, duration_ms=round(duration, 3), log_id=log.pk,
    )  # fmt: skip


def _scalar(cur, sql: str, params: list) -> Any:
    cur.execute(sql, params)
    row = cur.fetchone()
    return row[0] if row else None


def _compute_tail(cur, symbol: Symbol, timeframe: str, tf: int, calendar: Q.MarketCalendar, full: bool):
    key = [symbol.pk, timeframe]
    where = "symbol_id = %s AND timeframe = %s"
    if full:
        dirty = _scalar(cur, f"SELECT min(ts) FROM market_data_v2 WHERE {where}", key)  # noqa: S608
    else:
        dirty = _scalar(
            cur,
            f"SELECT min(ts) FROM market_data_v2 WHERE {where} AND features_revision IS DISTINCT FROM revision",  # noqa: S608
            key,
        )
    if dirty is None:
        return EnrichmentComputeLog.Mode.NOTHING, 0, 0, None, None
    bpd = Q.bars_per_day(calendar, tf)
    lookback = F.lookback_bars(timeframe_seconds=tf, bars_per_day=bpd)
    # Context: `lookback` rows before the first stale one, the earlier funding observations
    # the percentile needs, and one more row to tell whether the context starts after a gap.
    by_rows = _scalar(
        cur,
        f"SELECT ts FROM market_data_v2 WHERE {where} AND ts < %s ORDER BY ts DESC OFFSET %s LIMIT 1",  # noqa: S608
        key + [dirty, lookback],
    )
    by_funding = _scalar(
        cur,
        f"SELECT ts FROM market_data_v2 WHERE {where} AND ts < %s AND funding_rate IS NOT NULL"  # noqa: S608
        " ORDER BY ts DESC OFFSET %s LIMIT 1",
        key + [dirty, F.FUNDING_WINDOW - 2],
    )
    earliest = _scalar(cur, f"SELECT min(ts) FROM market_data_v2 WHERE {where}", key)  # noqa: S608
    if by_rows is None:
        context_from = earliest
    elif by_funding is not None:
        context_from = min(by_rows, by_funding)
    elif _scalar(cur, f"SELECT 1 FROM market_data_v2 WHERE {where} AND ts < %s AND funding_rate IS NOT NULL LIMIT 1",  # noqa: S608
                 key + [dirty]):  # fmt: skip
        context_from = earliest  # fewer earlier funding observations than a window: read them all
    else:
        context_from = by_rows
    select = ", ".join(["ts", *F.INPUT_COLUMNS, *F.RECURSIVE])
    cur.execute(
        f"SELECT {select} FROM market_data_v2 WHERE {where} AND ts >= %s ORDER BY ts",  # noqa: S608
        key + [context_from],
    )
    rows = cur.fetchall()
    columns = ["ts", *F.INPUT_COLUMNS, *F.RECURSIVE]
    frame = pd.DataFrame(rows, columns=columns)
    ts = pd.DatetimeIndex(pd.to_datetime(frame["ts"], utc=True))
    ts_s = ts.as_unit("s").asi8
    has_prior = context_from > earliest  # the first loaded row continues an older stretch unless a gap says not
    if has_prior:
        prev = _scalar(cur, f"SELECT max(ts) FROM market_data_v2 WHERE {where} AND ts < %s", key + [context_from])  # noqa: S608
        prev_s = int(pd.Timestamp(prev).timestamp())
        all_ts = np.concatenate([[prev_s], ts_s])
        breaks = Q.series_breaks(all_ts, calendar, tf)[1:]
        missing = Q.missing_before(all_ts, calendar, tf)[1:]
    else:
        breaks = Q.series_breaks(ts_s, calendar, tf)
        missing = Q.missing_before(ts_s, calendar, tf)
    emit_from = int(np.searchsorted(ts_s, int(pd.Timestamp(dirty).timestamp())))
    data = {c: frame[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in F.INPUT_COLUMNS}
    # The stored recursive state of the row before the first stale one (NULL while warming up).
    before = frame.iloc[emit_from - 1] if emit_from else None
    state = {c: np.nan if before is None or pd.isna(before[c]) else float(before[c]) for c in F.RECURSIVE}
    # Windows are aligned to the series' global row numbers: count the rows before the context.
    row_offset = _scalar(cur, f"SELECT count(*) FROM market_data_v2 WHERE {where} AND ts < %s", key + [context_from])  # noqa: S608
    out = F.compute_features(
        data, timeframe_seconds=tf, bars_per_day=bpd, breaks=breaks, emit_from=emit_from, state=state,
        row_offset=int(row_offset),
    )  # fmt: skip
    tail = slice(emit_from, None)
    expected = Q.expected_mask(ts_s[tail], calendar, tf)
    flags, score = Q.row_quality(
        open_=data["open"][tail], high=data["high"][tail], low=data["low"][tail], close=data["close"][tail],
        volume=data["volume"][tail], volume_spike_score=out["volume_spike_score"], missing=missing[tail],
        expected=expected,
    )  # fmt: skip
    out["quality_score"], out["quality_flags"] = score, flags.astype(np.float64)
    _write_features(cur, symbol.pk, timeframe, ts[tail], out)
    mode = EnrichmentComputeLog.Mode.FULL if full or emit_from == 0 else EnrichmentComputeLog.Mode.INCREMENTAL
    written = len(ts) - emit_from
    return mode, len(ts), written, ts[emit_from].to_pydatetime(), ts[-1].to_pydatetime()


def _write_features(cur, symbol_id: int, timeframe: str, ts: pd.DatetimeIndex, out: dict[str, np.ndarray]) -> None:
    cols = ", ".join(f"{c} float8" for c in WRITE_COLUMNS)
    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS v2_features (ts timestamptz NOT NULL, {cols}) ON COMMIT DROP")
    cur.execute("TRUNCATE v2_features")
    copy_into(cur, table="v2_features", columns=list(WRITE_COLUMNS), ts=ts, arrays=[out[c] for c in WRITE_COLUMNS])
    sets = ", ".join(f"{c} = s.{c}" for c in FEATURE_COLUMNS)
    cur.execute(
        f"""
        UPDATE market_data_v2 m SET {sets}, quality_score = s.quality_score,
            quality_flags = s.quality_flags::int, features_revision = m.revision, computed_at = now()
        FROM v2_features s
        WHERE m.symbol_id = %s AND m.timeframe = %s AND m.ts = s.ts
        """,  # noqa: S608 - column names are constants
        [symbol_id, timeframe],
    )


def _refresh_metrics(cur, symbol: Symbol, timeframe: str, tf: int, calendar: Q.MarketCalendar, since: datetime) -> None:
    """Recompute data_quality_metrics for every day from the first recomputed bar's day on."""
    zone = "UTC" if tf >= Q.DAY else calendar.timezone
    day_start = pd.Timestamp(since).tz_convert(zone).normalize()
    where = "symbol_id = %s AND timeframe = %s"
    key = [symbol.pk, timeframe]
    cur.execute(
        f"SELECT ts, quality_flags, quality_score FROM market_data_v2 WHERE {where} AND ts >= %s ORDER BY ts",  # noqa: S608
        key + [day_start.to_pydatetime()],
    )
    rows = cur.fetchall()
    if not rows:
        return
    earlier = _scalar(cur, f"SELECT 1 FROM market_data_v2 WHERE {where} AND ts < %s LIMIT 1", key + [rows[0][0]])  # noqa: S608
    ts_s = pd.DatetimeIndex(pd.to_datetime([r[0] for r in rows], utc=True)).as_unit("s").asi8
    metrics = Q.daily_metrics(
        ts_seconds=ts_s,
        flags=np.array([r[1] or 0 for r in rows], dtype=np.int64),
        score=np.array([np.nan if r[2] is None else r[2] for r in rows]),
        calendar=calendar,
        timeframe_seconds=tf,
        from_day_start=bool(earlier),
    )
    if metrics.empty:
        return
    cols = ["day", "expected_bars", "actual_bars", "completeness", "gaps", "volume_anomalies",
            "ohlc_inconsistencies", "outside_session", "avg_quality_score"]  # fmt: skip
    arrays = [metrics["day"].tolist()] + [[None if pd.isna(v) else v for v in metrics[c].tolist()] for c in cols[1:]]
    types = ["date[]", "int[]", "int[]", "float8[]", "int[]", "int[]", "int[]", "int[]", "float8[]"]
    unnest = ", ".join(f"%s::{t}" for t in types)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols[1:])
    cur.execute(
        f"""
        INSERT INTO data_quality_metrics (symbol_id, timeframe, {", ".join(cols)}, computed_at)
        SELECT %s, %s, u.*, now() FROM unnest({unnest}) AS u({", ".join(cols)})
        ON CONFLICT (symbol_id, timeframe, day) DO UPDATE SET {updates}, computed_at = now()
        """,  # noqa: S608 - column names are constants
        key + arrays,
    )


def _refresh_status(cur, symbol: Symbol, timeframe: str, *, error: str) -> None:
    cur.execute(
        """
        INSERT INTO enrichment_status (symbol_id, timeframe, state, rows, first_ts, last_ts, last_computed_at,
                                       avg_quality_score, completeness, last_error, updated_at)
        SELECT %s, %s,
               CASE WHEN count(*) FILTER (WHERE features_revision IS DISTINCT FROM revision) > 0
                    THEN 'pending' ELSE 'ok' END,
               count(*), min(ts), max(ts), max(computed_at), avg(quality_score),
               (SELECT sum(LEAST(actual_bars, expected_bars))::float8 / NULLIF(sum(expected_bars), 0)
                  FROM data_quality_metrics q WHERE q.symbol_id = %s AND q.timeframe = %s),
               %s, now()
        FROM market_data_v2 WHERE symbol_id = %s AND timeframe = %s
        ON CONFLICT (symbol_id, timeframe) DO UPDATE SET
            state = EXCLUDED.state, rows = EXCLUDED.rows, first_ts = EXCLUDED.first_ts, last_ts = EXCLUDED.last_ts,
            last_computed_at = EXCLUDED.last_computed_at, avg_quality_score = EXCLUDED.avg_quality_score,
            completeness = EXCLUDED.completeness, last_error = EXCLUDED.last_error, updated_at = now()
        """,
        [symbol.pk, timeframe, symbol.pk, timeframe, error, symbol.pk, timeframe],
    )


# --- the whole step ----------------------------------------------------------


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
    """Copy new and changed market_data candles of one series into market_data_v2."""
    source = MarketDataSource()
    status = EnrichmentStatus.objects.filter(symbol=symbol, timeframe=timeframe).first()
    since = None if full or status is None or status.source_synced_until is None else (
        status.source_synced_until - WATERMARK_OVERLAP
    )  # fmt: skip
    watermark = source.latest_change(symbol=symbol, timeframe=timeframe)
    frame = source.fetch(symbol=symbol, timeframe=timeframe, changed_since=since)
    result = candles_upsert(symbol=symbol, timeframe=timeframe, frame=frame, source=LOCAL, run_ref=run_ref)
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
    source: str = LOCAL,
    run: FeatureRun | None = None,
    progress=None,
) -> RunResult:
    """The feature step over every linked series (or the ones named): sync candles from
    the source, then compute features. A failing series is recorded and the rest go on."""
    for tf in timeframes or []:
        parse_timeframe(tf)
    if source != LOCAL:
        get_source(source)  # unknown codes fail before any work
    pairs = local_series(symbols=symbols, timeframes=timeframes)
    if progress is not None:
        progress.set_total(len(pairs))
    totals = {"inserted": 0, "updated": 0, "amendments": 0}
    rows, failed, errors = 0, 0, []
    run_ref = f"feature_run:{run.pk}" if run else "features"
    for symbol, tf in pairs:
        try:
            if source == LOCAL:
                for k, v in candles_sync_local(symbol=symbol, timeframe=tf, full=full, run_ref=run_ref).items():
                    totals[k] += v
            rows += features_compute(symbol=symbol, timeframe=tf, full=full, run=run).rows_written
        except DomainError:
            raise
        except Exception as exc:  # one bad series must not stop the others; it is logged and counted
            failed += 1
            errors.append(f"{symbol} {tf}: {exc}")
        if progress is not None:
            progress.advance(1)
    return RunResult(
        run_id=run.pk if run else None, series=len(pairs), candles_inserted=totals["inserted"],
        candles_updated=totals["updated"], amendments=totals["amendments"], rows_computed=rows, failed=failed,
        errors=errors[:20],
    )  # fmt: skip


def feature_run_create(*, kind: str = FeatureRun.Kind.COMPUTE, params: dict, requested_by: str) -> FeatureRun:
    return FeatureRun.objects.create(kind=kind, params=params, requested_by=requested_by)


def feature_run_execute(*, run: FeatureRun, progress_bar: bool = False) -> RunResult:
    """Run a queued compute run: status, timings, progress and result on the run record."""
    from etl.progress import Cancelled, ProgressReporter

    FeatureRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, started_at=timezone.now())
    params = run.params or {}
    symbols = symbols_from_params(params.get("symbols") or [])
    reporter = ProgressReporter(run, label="features", bar=progress_bar)
    try:
        result = features_run(
            symbols=symbols or None, timeframes=params.get("timeframes") or None, full=bool(params.get("full")),
            run=run, progress=reporter,
        )  # fmt: skip
    except Cancelled:
        FeatureRun.objects.filter(pk=run.pk).update(status=RunStatus.CANCELLED, finished_at=timezone.now())
        raise
    except Exception as exc:
        FeatureRun.objects.filter(pk=run.pk).update(
            status=RunStatus.FAILED, finished_at=timezone.now(), error=str(exc)[:2000]
        )
        raise
    finally:
        reporter.close()
    FeatureRun.objects.filter(pk=run.pk).update(
        status=RunStatus.FAILED if result.failed and not result.rows_computed else RunStatus.SUCCEEDED,
        finished_at=timezone.now(), result=result.to_dict(), error="\n".join(result.errors),
    )  # fmt: skip
    run.refresh_from_db()
    return result


def symbol_resolve(ref: str) -> Symbol:
    """'BTC', 'BTC@BINANCE' or a numeric id -> the symbol; DomainError when unknown or ambiguous."""
    ref = (ref or "").strip()
    qs = Symbol.objects.select_related("market")
    if ref.isdigit():
        found = list(qs.filter(pk=int(ref)))
    elif "@" in ref:
        ticker, market = ref.split("@", 1)
        found = list(qs.filter(ticker__iexact=ticker, market__code__iexact=market))
    else:
        found = list(qs.filter(ticker__iexact=ref))
    if not found:
        raise DomainError(f"unknown symbol {ref!r}", code="unknown_symbol", status_code=404)
    if len(found) > 1:
        markets = ", ".join(f"{s.ticker}@{s.market.code}" for s in found)
        raise DomainError(f"symbol {ref!r} is ambiguous: use one of {markets}", code="ambiguous_symbol")
    return found[0]


def symbols_from_params(refs: list[str]) -> list[Symbol]:
    return [symbol_resolve(r) for r in refs]


def features_step(*, options: dict, progress=None) -> dict[str, Any]:
    """Pipeline step "features": sync and compute every linked series from market_data
    (and make sure the default schedules exist, now that bootstrap has made the markets)."""
    from enrichment.services.schedules import schedules_ensure

    schedules_ensure()
    result = features_run(
        symbols=symbols_from_params(options.get("symbols") or []) or None,
        timeframes=options.get("timeframes") or None,
        full=bool(options.get("full_features")),
        progress=progress,
    )
    return result.to_dict()


__all__ = [
    "CANDLE_COLUMNS",
    "ComputeResult",
    "RunResult",
    "candles_sync_local",
    "feature_run_create",
    "feature_run_execute",
    "features_compute",
    "features_run",
    "features_step",
    "local_series",
    "market_calendar",
    "symbol_resolve",
]
