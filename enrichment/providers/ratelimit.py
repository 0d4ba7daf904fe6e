"""Per-provider rate limit shared by every worker on every host, kept in
PostgreSQL (always there, unlike Redis on a fresh machine).

A sliding window: each granted request is a row (`enrichment_rate_grants`)
with its weight (Binance weighs calls, 1-10); a request is granted when the
weights granted in the last `window` seconds plus its own fit the provider's
budget (`rate_limit_per_minute`, scaled to the window). The check and the
insert happen under a per-provider transaction-level advisory lock, so two
workers can never both take the last unit of budget. Times come from the
database clock so that hosts with skewed clocks still agree.

A grant keeps its weight for the window plus 1/60 of it (61 s of a minute): a request
reaches the provider a little after its grant, and not always equally late (a busy
process, a slow connection), so grants counted over exactly the window could put one or two
calls more than the budget into some window of the provider's arrivals (measured by
`bench/bench_live.py`: 1201-1204 of 1200). The margin covers delays up to one second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection, transaction

from enrichment.providers.errors import FailureReason, ProviderError
from etl.locks import PROVIDER_RATE, xact_lock


@dataclass(frozen=True, slots=True)
class Budget:
    used: int
    limit: int
    window: float

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


ARRIVAL_MARGIN = 1 / 60  # of the window: how much later than its grant a request may arrive


def _limit(budget_per_minute: int, window: float) -> int:
    return max(1, int(budget_per_minute * window / 60.0))


def _held(window: float) -> float:
    """How long a grant counts against the budget."""
    return window * (1 + ARRIVAL_MARGIN)


def _try_acquire(provider_code: str, limit: int, weight: int, window: float) -> float:
    """Take `weight` if it fits: 0.0. Otherwise the seconds to wait before asking again."""
    window = _held(window)
    with transaction.atomic(), connection.cursor() as cur:
        # Grants are short-lived bookkeeping: losing the last few to a crash is
        # harmless, so this transaction does not wait for its WAL flush.
        cur.execute("SET LOCAL synchronous_commit TO OFF")
        xact_lock(PROVIDER_RATE, provider_code)
        cur.execute(
            "SELECT clock_timestamp(), (SELECT blocked_until FROM enrichment_circuit_state WHERE provider = %s),"
            " (SELECT COALESCE(SUM(weight), 0) FROM enrichment_rate_grants"
            "   WHERE provider = %s AND granted_at > clock_timestamp() - make_interval(secs => %s))",
            [provider_code, provider_code, window],
        )
        now, blocked_until, used = cur.fetchone()
        if blocked_until is not None and blocked_until > now:
            return (blocked_until - now).total_seconds()
        # Drop what left the window; amortised, about one row per grant.
        cur.execute(
            "DELETE FROM enrichment_rate_grants WHERE provider = %s AND granted_at <= %s - make_interval(secs => %s)",
            [provider_code, now, window],
        )
        if used + weight <= limit:
            cur.execute(
                "INSERT INTO enrichment_rate_grants (provider, weight, granted_at) VALUES (%s, %s, %s)",
                [provider_code, weight, now],
            )
            return 0.0
        # Over budget: when will enough weight have left the window?
        cur.execute(
            "SELECT granted_at, weight FROM enrichment_rate_grants WHERE provider = %s ORDER BY granted_at",
            [provider_code],
        )
        need = used + weight - limit
        freed = 0
        for granted_at, w in cur.fetchall():
            freed += w
            if freed >= need:
                return max(0.001, (granted_at - now).total_seconds() + window)
        return 0.001


def rate_limit_acquire(
    *,
    provider_code: str,
    budget: int,
    weight: int = 1,
    window: float = 60.0,
    max_wait: float = 120.0,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Block until `weight` of the provider's budget is ours; return the seconds waited.
    Gives up (transient ProviderError) rather than wait longer than `max_wait`."""
    limit = _limit(budget, window)
    if weight > limit:
        raise ProviderError(
            f"{provider_code}: a call of weight {weight} can never fit a budget of {limit} per {window:g}s",
            permanent=True,
            reason=FailureReason.OVER_BUDGET,
        )
    waited = 0.0
    while True:
        wait = _try_acquire(provider_code, limit, weight, window)
        if wait <= 0:
            return waited
        if waited + wait > max_wait:
            raise ProviderError(
                f"{provider_code}: rate budget exhausted, next slot in {wait:.1f}s (max wait {max_wait:g}s)",
                reason=FailureReason.RATE_LIMITED,
            )
        sleep(wait)
        waited += wait


def rate_limit_budget(*, provider_code: str, budget: int, window: float = 60.0) -> Budget:
    """What is spent of the budget in the current window (for the status page)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT COALESCE(SUM(weight), 0) FROM enrichment_rate_grants"
            " WHERE provider = %s AND granted_at > clock_timestamp() - make_interval(secs => %s)",
            [provider_code, _held(window)],
        )
        (used,) = cur.fetchone()
    return Budget(used=int(used), limit=_limit(budget, window), window=window)
