"""The fetch log: one row per HTTP attempt to a provider."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import connection, transaction

from enrichment.providers import metrics as provider_metrics
from enrichment.providers.models import FetchLog

logger = logging.getLogger("enrichment.fetch")


def fetch_log_write(
    *,
    provider: str,
    endpoint: str,
    symbol: str,
    status_code: int | None,
    duration_ms: float,
    attempt: int,
    size: int,
    error: str,
    outcome: str,
) -> FetchLog:
    """Record one attempt (the caller has already redacted keys from `error`)."""
    provider_metrics.provider_requests.labels(provider=provider, outcome=outcome).inc()
    if attempt:
        provider_metrics.provider_request_seconds.labels(provider=provider).observe(duration_ms / 1000)
    logger.debug("%s %s %s attempt=%s status=%s %s", provider, endpoint, symbol, attempt, status_code, outcome)
    with transaction.atomic(), connection.cursor() as cur:
        # A log line lost to a crash is acceptable; waiting for a WAL flush on every attempt is not.
        cur.execute("SET LOCAL synchronous_commit TO OFF")
        return FetchLog.objects.create(
            provider=provider,
            endpoint=endpoint[:64],
            symbol=symbol[:64],
            status_code=status_code,
            duration_ms=round(duration_ms, 3),
            attempt=attempt,
            bytes=size,
            outcome=outcome[:24],
            error=error,
        )


def fetch_log_prune(cutoff: datetime) -> int:
    """Delete the fetch log rows older than `cutoff` (the retention pruner); return how many."""
    return FetchLog.objects.filter(created_at__lt=cutoff).delete()[0]
