"""Reads of the candle side: status, metrics, quality, feature rows (charts: `charts.py`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Avg, Count, Max, Min, Q, Sum
from django.utils import timezone

from enrichment.candles.candle_quality import QualityFlag
from enrichment.candles.feature_list import FEATURES, STRUCTURE_LABELS, TREND_LABELS
from enrichment.candles.models import (
    CANDLE_COLUMNS,
    BackfillState,
    DataQualityMetric,
    EnrichmentComputeLog,
    EnrichmentStatus,
    FeatureRun,
    MarketDataV2,
)
from enrichment.summaries import LOG_WINDOW_HOURS
from etl.models import Symbol
from etl.summaries import SCALE, SummaryValues, hour_floor, hourly_since, summary_read, window_start

MAX_FEATURE_ROWS = 10_000
QUALITY_DAY_FIELDS = (
    "timeframe",
    "day",
    "expected_bars",
    "actual_bars",
    "completeness",
    "gaps",
    "volume_anomalies",
    "ohlc_inconsistencies",
    "outside_session",
    "avg_quality_score",
)


def enrichment_status_for_symbol(*, symbol: Symbol) -> dict[str, Any]:
    statuses = EnrichmentStatus.objects.filter(symbol=symbol).order_by("timeframe")
    backfills = BackfillState.objects.filter(symbol=symbol).order_by("timeframe", "source")
    return {
        "symbol": symbol.ticker,
        "market": symbol.market.code,
        "symbol_id": symbol.pk,
        "timeframes": [
            {
                "timeframe": s.timeframe,
                "state": s.state,
                "rows": s.rows,
                "first_ts": s.first_ts,
                "last_ts": s.last_ts,
                "last_computed_at": s.last_computed_at,
                "avg_quality_score": s.avg_quality_score,
                "completeness": s.completeness,
                "last_error": s.last_error,
            }
            for s in statuses
        ],
        "backfills": [
            {
                "timeframe": b.timeframe,
                "source": b.source,
                "state": b.state,
                "range_start": b.range_start,
                "range_end": b.range_end,
                "last_completed_ts": b.last_completed_ts,
                "percent": b.percent,
                "attempts": b.attempts,
                "next_retry_at": b.next_retry_at,
                "last_error": b.last_error,
            }
            for b in backfills
        ],
    }


def _states(values: SummaryValues, prefix: str) -> dict[str, int]:
    return {m.removeprefix(prefix): values.total(m) for m in values.metrics(prefix) if values.total(m)}


def _mean(values: SummaryValues, metric: str) -> float | None:
    n = values.total(f"{metric}_n")
    return values.total(f"{metric}_sum") / SCALE / n if n else None


def _compute_logs(since: datetime) -> dict[str, Any]:
    """The compute log since `since`: whole hours from the summaries, the hour `since`
    falls in from the log itself (by its created_at index: one hour of rows at most)."""
    hour_end = hour_floor(since) + timedelta(hours=1)
    partial = EnrichmentComputeLog.objects.filter(created_at__gte=since, created_at__lt=hour_end).aggregate(
        runs=Count("id"),
        failures=Count("id", filter=Q(succeeded=False)),
        rows_written=Sum("rows_written"),
        duration=Sum("duration_ms"),
        longest=Max("duration_ms"),
    )
    values = summary_read("compute.", buckets=True)
    runs = sum(hourly_since(values, "compute.runs", since).values()) + partial["runs"]
    duration = sum(hourly_since(values, "compute.duration_sum", since).values()) / SCALE + (partial["duration"] or 0)
    longest = [v / SCALE for v in hourly_since(values, "compute.duration.max", since).values()]
    longest += [partial["longest"]] if partial["longest"] is not None else []
    return {
        "computations": runs,
        "failures": sum(hourly_since(values, "compute.failures", since).values()) + partial["failures"],
        "rows_written": sum(hourly_since(values, "compute.rows_written", since).values())
        + (partial["rows_written"] or 0),
        "avg_duration_ms": duration / runs if runs else None,
        "max_duration_ms": max(longest) if longest else None,
    }


def _compute_logs_scanned(since: datetime) -> dict[str, Any]:
    """Before the summaries' window (an explicit long `since`): the log itself."""
    logs = EnrichmentComputeLog.objects.filter(created_at__gte=since).aggregate(
        computations=Count("id"),
        failures=Count("id", filter=Q(succeeded=False)),
        rows_written=Sum("rows_written"),
        avg_duration_ms=Avg("duration_ms"),
        max_duration_ms=Max("duration_ms"),
    )
    return {**logs, "rows_written": logs["rows_written"] or 0}


def enrichment_metrics(*, since: datetime | None = None) -> dict[str, Any]:
    """Totals for dashboards: series by state, quality, compute activity since `since` (24 h).
    Read from the integrity summaries, not from enrichment_status or the compute log."""
    since = since or timezone.now() - timedelta(hours=24)
    values = summary_read("series.", "backfill.")
    by_state = _states(values, "series.state.")
    in_window = since >= window_start(LOG_WINDOW_HOURS)
    logs = _compute_logs(since) if in_window else _compute_logs_scanned(since)
    last_run = FeatureRun.objects.order_by("-created_at").values("id", "kind", "status", "created_at").first()
    return {
        "series": sum(by_state.values()),
        "series_by_state": by_state,
        "rows": values.total("series.rows"),
        "avg_quality_score": _mean(values, "series.quality"),
        "avg_completeness": _mean(values, "series.completeness"),
        "since": since,
        **logs,
        "backfills_by_state": _states(values, "backfill.state."),
        "last_run": last_run,
    }


def quality_for_symbol(
    *, symbol: Symbol, timeframe: str | None = None, start=None, end=None, limit: int = 366
) -> dict[str, Any]:
    qs = DataQualityMetric.objects.filter(symbol=symbol)
    if timeframe:
        qs = qs.filter(timeframe=timeframe)
    if start:
        qs = qs.filter(day__gte=start)
    if end:
        qs = qs.filter(day__lte=end)
    summary = qs.aggregate(
        days=Count("id"),
        expected_bars=Sum("expected_bars"),
        actual_bars=Sum("actual_bars"),
        gaps=Sum("gaps"),
        volume_anomalies=Sum("volume_anomalies"),
        ohlc_inconsistencies=Sum("ohlc_inconsistencies"),
        outside_session=Sum("outside_session"),
        avg_quality_score=Avg("avg_quality_score"),
        first_day=Min("day"),
        last_day=Max("day"),
    )
    days = list(qs.order_by("-day", "timeframe").values(*QUALITY_DAY_FIELDS)[:limit])
    return {"symbol": symbol.ticker, "market": symbol.market.code, "summary": summary, "days": days}


def feature_rows(
    *, symbol: Symbol, timeframe: str, start: datetime | None, end: datetime | None, limit: int = 1000
) -> list[dict[str, Any]]:
    """Candles with their features in time order: the last `limit` bars of the range."""
    limit = max(1, min(limit, MAX_FEATURE_ROWS))
    qs = MarketDataV2.objects.filter(symbol=symbol, timeframe=timeframe)
    if start:
        qs = qs.filter(ts__gte=start)
    if end:
        qs = qs.filter(ts__lt=end)
    fields = ["ts", *CANDLE_COLUMNS, *FEATURES, "quality_score", "quality_flags", "source", "revision"]
    rows = list(qs.order_by("-ts").values(*fields)[:limit])
    rows.reverse()
    for row in rows:
        row["trend_direction"] = TREND_LABELS.get(row["trend_direction"])
        row["market_structure"] = STRUCTURE_LABELS.get(row["market_structure"])
        row["quality_flags"] = QualityFlag.names(row["quality_flags"])
    return rows


# The completeness gate reads the latest measured days: the newest day any series has a
# measure for, and the days before it, from the per-day summaries (a few rows per day).
COMPLETENESS_DAYS = 30

_COMPLETENESS_SQL = """
WITH days AS (
    SELECT bucket, sum(value) FILTER (WHERE metric = 'quality.expected') AS expected,
           sum(value) FILTER (WHERE metric = 'quality.complete') AS complete
    FROM (
        SELECT metric, bucket, value FROM integrity_summary WHERE metric IN ('quality.expected', 'quality.complete')
        UNION ALL
        SELECT metric, bucket, value FROM integrity_summary_deltas
        WHERE metric IN ('quality.expected', 'quality.complete')
    ) x GROUP BY bucket
), newest AS (SELECT max(bucket) AS day FROM days WHERE expected > 0)
SELECT sum(complete), sum(expected) FROM days, newest
WHERE days.bucket > newest.day - make_interval(days => %s) AND days.expected > 0
"""


def data_completeness(*, days: int = COMPLETENESS_DAYS) -> float | None:
    """Completeness (0-1) of the latest `days` measured days (up to the newest day measured),
    weighted by their expected bars: the `min_data_completeness` gate's indicator. One
    read of the integrity summaries. None: nothing measured yet."""
    with connection.cursor() as cur:
        cur.execute(_COMPLETENESS_SQL, [days])
        complete, expected = cur.fetchone()
    if not expected:
        return None
    return round(float(complete) / SCALE / float(expected), 4)
