"""The fetch log: one row per HTTP attempt to a provider, written at once
(`fetch_log_write`) or, for a client that keeps its bookkeeping in blocks, many rows with one
insert (`fetch_log_write_many`)."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import astuple, dataclass, field
from datetime import UTC, datetime

from django.db import connection, transaction

from enrichment.providers import metrics as provider_metrics
from enrichment.providers.models import FetchLog
from etl.events import deltas_batched

logger = logging.getLogger("enrichment.fetch")


@dataclass(frozen=True, slots=True)
class FetchRow:
    """One attempt, as its fetch-log row will say (`created_at`: when it was made)."""

    provider: str
    endpoint: str
    symbol: str
    status_code: int | None
    duration_ms: float
    attempt: int
    size: int
    error: str
    outcome: str
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


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


def fetch_log_write_many(rows: list[FetchRow]) -> None:
    """Record many attempts: their rows with one insert, their counters with one more (the same
    rows and counts `fetch_log_write` gives one at a time). Inside the caller's transaction."""
    if not rows:
        return
    with deltas_batched():
        for (provider, outcome), n in Counter((r.provider, r.outcome) for r in rows).items():
            provider_metrics.provider_requests.labels(provider=provider, outcome=outcome).inc(n)
        durations = defaultdict(list)
        for r in rows:
            if r.attempt:
                durations[r.provider].append(r.duration_ms / 1000)
        for provider, seconds in durations.items():
            provider_metrics.provider_request_seconds.labels(provider=provider).observe_many(seconds)
    if logger.isEnabledFor(logging.DEBUG):
        for r in rows:
            logger.debug("%s %s %s attempt=%s status=%s %s", *astuple(r)[:3], r.attempt, r.status_code, r.outcome)
    columns = {
        "provider": ("text", [r.provider for r in rows]),
        "endpoint": ("text", [r.endpoint[:64] for r in rows]),
        "symbol": ("text", [r.symbol[:64] for r in rows]),
        "status_code": ("int", [r.status_code for r in rows]),
        "duration_ms": ("float8", [round(r.duration_ms, 3) for r in rows]),
        "attempt": ("int", [r.attempt for r in rows]),
        "bytes": ("int", [r.size for r in rows]),
        "outcome": ("text", [r.outcome[:24] for r in rows]),
        "error": ("text", [r.error for r in rows]),
        "created_at": ("timestamptz", [r.created_at for r in rows]),
    }
    names = ", ".join(columns)
    unnest = ", ".join(f"%s::{kind}[]" for kind, _ in columns.values())
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO enrichment_fetch_log ({names}) SELECT * FROM unnest({unnest})",  # noqa: S608 - constants
            [values for _, values in columns.values()],
        )


def fetch_log_prune(cutoff: datetime) -> int:
    """Delete the fetch log rows older than `cutoff` (the retention pruner); return how many."""
    return FetchLog.objects.filter(created_at__lt=cutoff).delete()[0]
