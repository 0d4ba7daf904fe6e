"""Enrichment's logs grow with every call and computation; prune the old ones."""

from __future__ import annotations


def prune_fetch_log(cutoff) -> int:
    from enrichment.models import FetchLog

    return FetchLog.objects.filter(created_at__lt=cutoff).delete()[0]


def prune_compute_log(cutoff) -> int:
    from enrichment.models import EnrichmentComputeLog

    return EnrichmentComputeLog.objects.filter(created_at__lt=cutoff).delete()[0]
