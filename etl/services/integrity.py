"""Data-integrity snapshots: the indicators stored over time for the trends."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from etl.models import IntegritySnapshot
from etl.selectors import integrity_status

SNAPSHOT_FIELDS = (
    "candles",
    "candles_without_symbol",
    "symbol_coverage",
    "asset_class_consistency",
    "enrichment_coverage",
    "overall_quality",
)


def integrity_snapshot_take(*, at: datetime | None = None) -> int:
    """Store the current indicators, overall and per market; returns rows written."""
    at = at or timezone.now()
    status = integrity_status()
    rows = [IntegritySnapshot(taken_at=at, market="", **{f: status["overall"][f] for f in SNAPSHOT_FIELDS})]
    rows += [
        IntegritySnapshot(taken_at=at, market=code, **{f: values[f] for f in SNAPSHOT_FIELDS})
        for code, values in status["markets"].items()
    ]
    IntegritySnapshot.objects.bulk_create(rows)
    return len(rows)


def prune_integrity_snapshots(cutoff) -> int:
    return IntegritySnapshot.objects.filter(taken_at__lt=cutoff).delete()[0]
