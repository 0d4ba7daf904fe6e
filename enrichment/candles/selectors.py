"""Reads of the candle side: status, metrics, quality, feature rows (charts: `charts.py`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, F, Max, Min, Q, Sum
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
from etl.models import Symbol

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


def enrichment_metrics(*, since: datetime | None = None) -> dict[str, Any]:
    """Totals for dashboards: series by state, quality, compute activity since `since` (24 h)."""
    since = since or timezone.now() - timedelta(hours=24)
    by_state = dict(EnrichmentStatus.objects.values_list("state").annotate(n=Count("id")).order_by())
    totals = EnrichmentStatus.objects.aggregate(
        rows=Sum("rows"), avg_quality=Avg("avg_quality_score"), avg_completeness=Avg("completeness")
    )
    logs = EnrichmentComputeLog.objects.filter(created_at__gte=since).aggregate(
        computations=Count("id"),
        failures=Count("id", filter=Q(succeeded=False)),
        rows_written=Sum("rows_written"),
        avg_duration_ms=Avg("duration_ms"),
        max_duration_ms=Max("duration_ms"),
    )
    backfills = dict(BackfillState.objects.values_list("state").annotate(n=Count("id")).order_by())
    last_run = FeatureRun.objects.order_by("-created_at").values("id", "kind", "status", "created_at").first()
    return {
        "series": sum(by_state.values()),
        "series_by_state": by_state,
        "rows": totals["rows"] or 0,
        "avg_quality_score": totals["avg_quality"],
        "avg_completeness": totals["avg_completeness"],
        "since": since,
        "computations": logs["computations"],
        "failures": logs["failures"],
        "rows_written": logs["rows_written"] or 0,
        "avg_duration_ms": logs["avg_duration_ms"],
        "max_duration_ms": logs["max_duration_ms"],
        "backfills_by_state": backfills,
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


# The most recently written quality days the completeness gate reads: the
# feature step upserts one row per series and day, so the newest ids are the
# newest days of the series it last computed; reading them by the primary key
# costs the same at 100 rows or 100 million (no scan of the table).
COMPLETENESS_LATEST_ROWS = 10_000


def data_completeness(*, latest_rows: int = COMPLETENESS_LATEST_ROWS) -> float | None:
    """Completeness (0-1) of the latest quality days, weighted by their expected
    bars: the `min_data_completeness` gate's indicator. None: nothing measured yet."""
    latest = DataQualityMetric.objects.filter(expected_bars__gt=0, completeness__isnull=False).order_by("-id")
    totals = DataQualityMetric.objects.filter(id__in=latest.values("id")[:latest_rows]).aggregate(
        bars=Sum("expected_bars"), complete=Sum(F("completeness") * F("expected_bars"))
    )
    if not totals["bars"]:
        return None
    return round(totals["complete"] / totals["bars"], 4)
