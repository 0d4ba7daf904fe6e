"""A client's bookkeeping for many calls in a row (the live poller's hundreds a minute), done
once per block of requests instead of once per request, with the same guarantees.

- **Rate limit**: the shared limiter grants a block of weight in one transaction (one grant
  row, `ratelimit.rate_grant_try`); the client spends it on its next requests. A block is only
  spent for `BLOCK_SECONDS` after its grant (half the limiter's one-second allowance for late
  arrivals), so every request of it reaches the provider within the margin a single grant has;
  what a block did not use is given back (its row shrunk to the weight used) in the next
  block's transaction. The budget is never exceeded across processes or hosts: a block is
  granted under the same lock and the same sliding-window check as a single request.
- **Circuit breaker**: the circuit row is read with each block's grant (same statement); while
  that snapshot is fresh and closed, a call neither reads it again nor records its success
  (as the per-request path skips a healthy circuit's success). Any failure is recorded at once,
  under the row lock (`circuit.circuit_record_failure`), and drops the snapshot, so a failing
  provider still opens the circuit after the same number of failures and the next call asks
  the circuit itself (fails fast once it is open). Another worker's opening is seen at the next
  block, at most `SNAPSHOT_SECONDS` later.
- **Fetch log**: every attempt still gets its own `enrichment_fetch_log` row (same columns,
  `created_at` the attempt's time); the rows and their counters are written with one insert
  each in the next block's transaction, and at `close()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection, transaction

from enrichment.providers import circuit, clock, ratelimit
from enrichment.providers.errors import FailureReason, ProviderError
from enrichment.providers.fetch_log import FetchRow, fetch_log_write_many

# How long a granted block may be spent: half the limiter's allowance for late arrivals
# (`ratelimit.ARRIVAL_MARGIN`, 1 s of a 60 s window), the other half for the request's way there.
BLOCK_SHARE = 0.5
# The largest block, as a share of the window's budget (1200 a minute: 60).
MAX_BLOCK_SHARE = 0.05
# How long a circuit read counts as current.
SNAPSHOT_SECONDS = 2.0
# Fetch-log rows kept before they are written even without a new block.
MAX_PENDING_ROWS = 1000
# A healthy circuit's last success is refreshed at most this often (circuit_record_success).
SUCCESS_REFRESH = timedelta(seconds=60)


@dataclass(slots=True)
class _Block:
    grant_id: int
    granted: int
    used: int
    spend_until: float  # monotonic
    ran_out: bool = False


class CallBook:
    """The bookkeeping of one client's calls, in blocks (see the module docstring)."""

    def __init__(
        self, *, code: str, budget: int, window: float, max_wait: float, sleep: Callable[[float], None]
    ) -> None:
        self.code = code
        self.limit = ratelimit.rate_limit_units(budget, window)
        self.window = window
        self.max_wait = max_wait
        self.sleep = sleep
        self.block: _Block | None = None
        self.block_size = 8
        self.rows: list[FetchRow] = []
        self.seen_at = float("-inf")  # monotonic time of the last circuit read
        self.closed = False
        self.healthy = False

    # -- circuit -------------------------------------------------------------------------
    def _fresh(self) -> bool:
        return time.monotonic() - self.seen_at < SNAPSHOT_SECONDS

    def before_call(self) -> None:
        """`circuit.circuit_before_call`, answered from the snapshot while it is fresh and closed."""
        if self.closed and self._fresh():
            return
        state = circuit.circuit_before_call(self.code)
        self._note(closed=state == circuit.CircuitState.State.CLOSED, healthy=False)

    def record_success(self) -> None:
        if self.healthy and self._fresh():
            return
        self.healthy = circuit.circuit_record_success(self.code)

    def record_failure(self, error: str) -> None:
        circuit.circuit_record_failure(self.code, error=error)
        self.seen_at, self.closed, self.healthy = float("-inf"), False, False

    def _note(self, *, closed: bool, healthy: bool) -> None:
        self.seen_at, self.closed, self.healthy = time.monotonic(), closed, healthy

    def _note_row(self, row: tuple | None) -> None:
        if row is None:
            self._note(closed=True, healthy=False)
            return
        state, failures, last_success = row
        closed = state == circuit.CircuitState.State.CLOSED
        healthy = closed and not failures and last_success is not None and last_success > clock.now() - SUCCESS_REFRESH
        self._note(closed=closed, healthy=healthy)

    # -- rate limit ----------------------------------------------------------------------
    def take(self, weight: int) -> None:
        """`weight` of the shared budget: from the current block while it lasts, else a new one."""
        block = self.block
        if block is not None and time.monotonic() < block.spend_until:
            if block.used + weight <= block.granted:
                block.used += weight
                return
            block.ran_out = True
        self._renew(weight)

    def drop_block(self) -> None:
        """A throttled or failed attempt: the next one asks the limiter (a Retry-After is honoured)."""
        if self.block is not None:
            self.block.spend_until = float("-inf")

    def _next_size(self, need: int) -> int:
        block = self.block
        if block is not None:
            # Ran out within its time: twice as big; expired: about what it used.
            self.block_size = block.granted * 2 if block.ran_out else max(1, block.used)
        ceiling = max(1, int(self.limit * MAX_BLOCK_SHARE))
        self.block_size = max(1, min(self.block_size, ceiling))
        return max(need, self.block_size)

    def _renew(self, need: int) -> None:
        if need > self.limit:
            raise ProviderError(
                f"{self.code}: a call of weight {need} can never fit a budget of {self.limit} per {self.window:g}s",
                permanent=True,
                reason=FailureReason.OVER_BUDGET,
            )
        want = self._next_size(need)
        waited = 0.0
        while True:
            started = time.monotonic()
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute("SET LOCAL synchronous_commit TO OFF")  # bookkeeping: see fetch_log, ratelimit
                self._settle(cur)
                tried = ratelimit.rate_grant_try(
                    cur, provider_code=self.code, limit=self.limit, need=need, want=want, window=self.window
                )
            self._note_row(tried.circuit)
            if tried.grant_id is not None:
                spend = self.window * ratelimit.ARRIVAL_MARGIN * BLOCK_SHARE
                self.block = _Block(tried.grant_id, tried.weight, need, started + spend)
                return
            if waited + tried.wait > self.max_wait:
                raise ProviderError(
                    f"{self.code}: rate budget exhausted, next slot in {tried.wait:.1f}s (max wait {self.max_wait:g}s)",
                    reason=FailureReason.RATE_LIMITED,
                )
            self.sleep(tried.wait)
            waited += tried.wait

    def _settle(self, cur) -> None:
        """The pending fetch-log rows written, the last block's unused weight given back."""
        if self.rows:
            fetch_log_write_many(self.rows)
            self.rows = []
        if self.block is not None:
            ratelimit.rate_grant_shrink(cur, grant_id=self.block.grant_id, used=self.block.used)
            self.block = None

    # -- fetch log -----------------------------------------------------------------------
    def log(self, row: FetchRow) -> None:
        self.rows.append(row)
        if len(self.rows) >= MAX_PENDING_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write what is pending and give back the current block's unused weight."""
        if not self.rows and self.block is None:
            return
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("SET LOCAL synchronous_commit TO OFF")
            self._settle(cur)
