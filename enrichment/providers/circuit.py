"""Per-provider circuit breaker whose state lives in PostgreSQL
(`enrichment_circuit_state`), so every worker process on every host sees the
same circuit: closed → open after N consecutive failures → half-open after the
recovery time → closed after M successes (the old system's 3, 300 s, 1 by default).

Each transition is a short transaction holding the provider's row lock
(`SELECT … FOR UPDATE`), so two workers failing at once count two failures and
only one of them gets to run the half-open trial call.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import connection, transaction

from enrichment.providers import clock
from enrichment.providers import metrics as provider_metrics
from enrichment.providers.config import provider_setting
from enrichment.providers.errors import FailureReason, ProviderError
from enrichment.providers.models import CircuitState


def failure_threshold() -> int:
    return provider_setting("CIRCUIT_FAILURE_THRESHOLD")


def recovery_seconds() -> float:
    return provider_setting("CIRCUIT_RECOVERY_SECONDS")


def success_threshold() -> int:
    return provider_setting("CIRCUIT_SUCCESS_THRESHOLD")


def _locked(provider: str) -> CircuitState:
    CircuitState.objects.get_or_create(provider=provider)
    return CircuitState.objects.select_for_update().get(provider=provider)


def circuit_before_call(provider: str) -> str:
    """Let a call through (returns the state it runs under) or fail fast with
    a transient ProviderError(reason="circuit_open")."""
    now = clock.now()
    # The common case, a closed circuit, is one plain read: no lock, no write.
    current = CircuitState.objects.filter(provider=provider).values_list("state", flat=True).first()
    if current in (None, CircuitState.State.CLOSED):
        return CircuitState.State.CLOSED
    with transaction.atomic():
        state = _locked(provider)
        if state.state == CircuitState.State.CLOSED:
            return state.state
        if state.state == CircuitState.State.OPEN:
            if state.opened_at and now - state.opened_at >= timedelta(seconds=recovery_seconds()):
                # This caller becomes the trial call; the others keep failing fast.
                state.state = CircuitState.State.HALF_OPEN
                state.probe_started_at = now
                state.consecutive_successes = 0
                state.save(update_fields=["state", "probe_started_at", "consecutive_successes", "updated_at"])
                return state.state
            retry_in = recovery_seconds() - (now - state.opened_at).total_seconds() if state.opened_at else 0
            message = f"{provider}: circuit open after {state.consecutive_failures} failures, retry in {retry_in:.0f}s"
        else:  # half-open: one trial at a time; a trial that never reported back frees the slot after a while
            stale = state.probe_started_at is None or now - state.probe_started_at > timedelta(
                seconds=provider_setting("CIRCUIT_PROBE_TIMEOUT")
            )
            if stale:
                state.probe_started_at = now
                state.save(update_fields=["probe_started_at", "updated_at"])
                return state.state
            message = f"{provider}: circuit half-open, a trial call is in progress"
    raise ProviderError(message, reason=FailureReason.CIRCUIT_OPEN)


def circuit_record_success(provider: str) -> bool:
    """Record a successful call; return whether the circuit is now closed and healthy."""
    now = clock.now()
    # A success on a healthy circuit changes nothing worth a locked write; the
    # last success time is refreshed at most once a minute.
    healthy = CircuitState.objects.filter(
        provider=provider,
        state=CircuitState.State.CLOSED,
        consecutive_failures=0,
        last_success_at__gt=now - timedelta(seconds=60),
    ).exists()
    if healthy:
        return True
    with transaction.atomic():
        state = _locked(provider)
        state.consecutive_failures = 0
        state.consecutive_successes += 1
        state.last_success_at = now
        if state.state != CircuitState.State.CLOSED and state.consecutive_successes >= success_threshold():
            state.state = CircuitState.State.CLOSED
            state.opened_at = None
            state.probe_started_at = None
        state.save()
    return state.state == CircuitState.State.CLOSED


def circuit_record_failure(provider: str, *, error: str) -> None:
    now = clock.now()
    with transaction.atomic():
        state = _locked(provider)
        state.consecutive_failures += 1
        state.consecutive_successes = 0
        state.last_failure_at = now
        state.last_error = error[:2000]
        if state.state == CircuitState.State.HALF_OPEN or (
            state.state == CircuitState.State.CLOSED and state.consecutive_failures >= failure_threshold()
        ):
            state.state = CircuitState.State.OPEN
            state.opened_at = now
            state.probe_started_at = None
            provider_metrics.circuit_opened.labels(provider=provider).inc()
        state.save()


def circuits_reset(*, provider_codes: list[str]) -> int:
    """Close these providers' circuits by hand (admin action); return how many were asked."""
    CircuitState.objects.filter(provider__in=provider_codes).update(
        state=CircuitState.State.CLOSED, consecutive_failures=0, opened_at=None, probe_started_at=None
    )
    return len(provider_codes)


def provider_block_until(provider: str, *, seconds: float) -> None:
    """Remember a Retry-After for every worker: the rate limiter waits it out."""
    # The database clock, like the rate limiter's: one clock for every host.
    CircuitState.objects.get_or_create(provider=provider)
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE enrichment_circuit_state SET blocked_until = GREATEST(COALESCE(blocked_until, '-infinity'),"
            " clock_timestamp() + make_interval(secs => %s)) WHERE provider = %s",
            [seconds, provider],
        )


def circuit_state(provider: str) -> str:
    """The state as a caller would see it now (open turns half-open once recovered)."""
    return circuit_state_of(CircuitState.objects.filter(provider=provider).first())


def circuit_state_of(state: CircuitState | None) -> str:
    """`circuit_state` of a row already read (a page that reads every provider's at once)."""
    if state is None:
        return CircuitState.State.CLOSED
    if (
        state.state == CircuitState.State.OPEN
        and state.opened_at
        and clock.now() - state.opened_at >= timedelta(seconds=recovery_seconds())
    ):
        return CircuitState.State.HALF_OPEN
    return state.state
