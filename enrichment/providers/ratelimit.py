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


def rate_limit_units(budget_per_minute: int, window: float) -> int:
    """The budget of one window."""
    return max(1, int(budget_per_minute * window / 60.0))


def _held(window: float) -> float:
    """How long a grant counts against the budget."""
    return window * (1 + ARRIVAL_MARGIN)


@dataclass(frozen=True, slots=True)
class GrantTry:
    """One try for budget: `weight` granted (grant row `grant_id`), or 0 and the seconds to wait.
    `circuit`: the provider's circuit row as read in the same statement (state, consecutive
    failures, last success; None when it has none) for a caller that keeps a snapshot of it."""

    weight: int
    wait: float
    grant_id: int | None = None
    circuit: tuple | None = None


def _try_acquire(provider_code: str, limit: int, weight: int, window: float) -> float:
    """Take `weight` if it fits: 0.0. Otherwise the seconds to wait before asking again."""
    with transaction.atomic(), connection.cursor() as cur:
        # Grants are short-lived bookkeeping: losing the last few to a crash is
        # harmless, so this transaction does not wait for its WAL flush.
        cur.execute("SET LOCAL synchronous_commit TO OFF")
        return rate_grant_try(
            cur, provider_code=provider_code, limit=limit, need=weight, want=weight, window=window
        ).wait


def rate_grant_try(cur, *, provider_code: str, limit: int, need: int, want: int, window: float) -> GrantTry:
    """Inside the caller's transaction (which holds the provider's lock from here to its
    commit): grant up to `want` of the budget, at least `need`, as one grant row; or nothing
    and the seconds until `need` fits. A Retry-After the provider gave is waited out first."""
    window = _held(window)
    xact_lock(PROVIDER_RATE, provider_code)
    cur.execute(
        "SELECT clock_timestamp(), c.blocked_until, c.state, c.consecutive_failures, c.last_success_at,"
        " (SELECT COALESCE(SUM(weight), 0) FROM enrichment_rate_grants"
        "   WHERE provider = %s AND granted_at > clock_timestamp() - make_interval(secs => %s))"
        " FROM (SELECT 1) one LEFT JOIN enrichment_circuit_state c ON c.provider = %s",
        [provider_code, window, provider_code],
    )
    now, blocked_until, *circuit_row, used = cur.fetchone()
    circuit = tuple(circuit_row) if circuit_row[0] is not None else None
    if blocked_until is not None and blocked_until > now:
        return GrantTry(0, (blocked_until - now).total_seconds(), circuit=circuit)
    # Drop what left the window; amortised, about one row per grant.
    cur.execute(
        "DELETE FROM enrichment_rate_grants WHERE provider = %s AND granted_at <= %s - make_interval(secs => %s)",
        [provider_code, now, window],
    )
    if used + need <= limit:
        weight = max(need, min(want, limit - used))
        cur.execute(
            "INSERT INTO enrichment_rate_grants (provider, weight, granted_at) VALUES (%s, %s, %s) RETURNING id",
            [provider_code, weight, now],
        )
        return GrantTry(weight, 0.0, grant_id=cur.fetchone()[0], circuit=circuit)
    # Over budget: when will enough weight have left the window?
    cur.execute(
        "SELECT granted_at, weight FROM enrichment_rate_grants WHERE provider = %s ORDER BY granted_at",
        [provider_code],
    )
    excess = used + need - limit
    freed = 0
    for granted_at, w in cur.fetchall():
        freed += w
        if freed >= excess:
            return GrantTry(0, max(0.001, (granted_at - now).total_seconds() + window), circuit=circuit)
    return GrantTry(0, 0.001, circuit=circuit)


def rate_grant_shrink(cur, *, grant_id: int, used: int) -> None:
    """Give back what a grant for many requests did not use (it keeps `used`; none: it goes)."""
    if used:
        cur.execute(
            "UPDATE enrichment_rate_grants SET weight = %s WHERE id = %s AND weight > %s", [used, grant_id, used]
        )
    else:
        cur.execute("DELETE FROM enrichment_rate_grants WHERE id = %s", [grant_id])


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
    limit = rate_limit_units(budget, window)
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
    return Budget(used=int(used), limit=rate_limit_units(budget, window), window=window)
