"""Reads of asset enrichment: how much of the symbol catalogue is enriched, and the latest runs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Avg, Count, Q
from django.utils import timezone

from enrichment.assets.models import DEAD_LETTER_KIND, AssetEnrichmentRun
from etl.models import DeadLetter, Symbol


def enrichment_status(*, stale_days: int = 30) -> dict[str, Any]:
    """How much of the symbol catalogue is enriched, its quality, the latest runs and open dead letters."""
    cutoff = timezone.now() - timedelta(days=stale_days)
    agg = Symbol.objects.filter(is_active=True).aggregate(
        total=Count("id"),
        enriched=Count("id", filter=Q(enriched_at__isnull=False)),
        never=Count("id", filter=Q(enriched_at__isnull=True)),
        stale=Count("id", filter=Q(enriched_at__lt=cutoff)),
        scored=Count("id", filter=Q(data_quality_score__isnull=False)),
        average_quality=Avg("data_quality_score"),
    )
    runs = [
        {
            "id": r.pk,
            "status": r.status,
            "requested_by": r.requested_by,
            "created_at": r.created_at,
            "finished_at": r.finished_at,
            "total": r.symbols_total,
            "enriched": r.enriched,
            "partial": r.partial,
            "failed": r.failed,
            "dead_lettered": r.dead_lettered,
            "percent": r.percent,
            "error": r.error,
        }
        for r in AssetEnrichmentRun.objects.order_by("-created_at")[:10]
    ]
    total = agg["total"] or 0
    return {
        "symbols": total,
        "enriched": agg["enriched"],
        "never_enriched": agg["never"],
        "stale": agg["stale"],
        "stale_days": stale_days,
        "coverage_percent": round(100 * agg["enriched"] / total, 2) if total else None,
        "average_quality": round(agg["average_quality"], 1) if agg["average_quality"] is not None else None,
        "open_dead_letters": DeadLetter.objects.filter(kind=DEAD_LETTER_KIND, resolved_at__isnull=True).count(),
        "runs": runs,
    }
