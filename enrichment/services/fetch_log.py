"""The fetch log: one row per HTTP attempt to a provider."""

from __future__ import annotations

import logging

from enrichment.models import FetchLog

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
    logger.debug("%s %s %s attempt=%s status=%s %s", provider, endpoint, symbol, attempt, status_code, outcome)
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
