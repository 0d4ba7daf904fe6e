"""Read side of the provider layer: per-provider health for the status API, the
admin page and the dashboard."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import pgettext_lazy

from enrichment.providers import circuit
from enrichment.providers.clients import client_class
from enrichment.providers.config import provider_setting
from enrichment.providers.errors import ProviderError
from enrichment.providers.models import CircuitState, FetchLog
from enrichment.providers.ratelimit import rate_limit_budget
from etl.models import DataProvider
from etl.summaries import hour_floor, hourly_since, summary_read

# Outcomes that mean "we could not reach it" rather than "it answered badly".
UNREACHABLE = {"unreachable", "timeout"}
# What the admin and the dashboard show for `availability` (the API keeps the machine word).
AVAILABILITY_LABELS = {
    "available": pgettext_lazy("provider availability", "available"),
    "disabled": pgettext_lazy("provider availability", "disabled"),
    "no_key": pgettext_lazy("provider availability", "no API key"),
    "circuit_open": pgettext_lazy("provider availability", "circuit open"),
    "half_open": pgettext_lazy("provider availability", "trial call (half-open)"),
    "blocked": pgettext_lazy("provider availability", "blocked (Retry-After)"),
    "unreachable": pgettext_lazy("provider availability", "unreachable"),
    "no_client": pgettext_lazy("provider availability", "no client"),
}


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    code: str
    name: str
    priority: int
    enabled: bool
    requires_api_key: bool
    has_api_key: bool
    availability: str  # available | disabled | no_key | circuit_open | half_open | blocked | unreachable | no_client
    available: bool
    circuit_state: str
    consecutive_failures: int
    retry_at: datetime | None
    blocked_until: datetime | None
    budget_limit: int
    budget_used: int
    budget_remaining: int
    calls_24h: int
    success_rate_24h: float | None
    last_error: str
    last_success_at: datetime | None
    last_failure_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def availability_label(self) -> str:
        return str(AVAILABILITY_LABELS.get(self.availability, self.availability))

    @property
    def circuit_label(self) -> str:
        """The circuit's state in the operator's words."""
        try:
            return str(CircuitState.State(self.circuit_state).label)
        except ValueError:
            return self.circuit_state


def providers_status() -> list[ProviderHealth]:
    """One entry per data provider, in priority order. Never shows a key, only whether one is set."""
    calls = _calls_since(timezone.now() - timedelta(hours=24))
    states = {s.provider: s for s in CircuitState.objects.all()}
    window = provider_setting("RATE_WINDOW_SECONDS")
    return [
        _provider_health(provider, states.get(provider.code), calls.get(provider.code), window=window)
        for provider in DataProvider.objects.order_by("priority", "code")
    ]


def _calls_since(since: datetime) -> dict[str, dict[str, int]]:
    """Attempts and successes per provider since `since`: whole hours from the integrity
    summaries (fetch.* per provider and hour), the hour `since` falls in from the fetch
    log's created_at index (an hour of calls at most, bounded by the rate limits)."""
    hour_end = hour_floor(since) + timedelta(hours=1)
    partial = (
        FetchLog.objects.filter(created_at__gte=since, created_at__lt=hour_end, attempt__gte=1)
        .values("provider")
        .annotate(total=Count("id"), ok=Count("id", filter=Q(outcome="ok")))
    )
    values = summary_read("fetch.", buckets=True)
    totals, oks = hourly_since(values, "fetch.calls", since), hourly_since(values, "fetch.ok", since)
    for row in partial:
        totals[row["provider"]] = totals.get(row["provider"], 0) + row["total"]
        oks[row["provider"]] = oks.get(row["provider"], 0) + row["ok"]
    return {code: {"total": n, "ok": oks.get(code, 0)} for code, n in totals.items() if n}


def _has_client(code: str) -> bool:
    try:
        client_class(code)
    except ProviderError:
        return False
    return True


def _availability(
    provider: DataProvider, state: CircuitState | None, circuit_now: str, last: FetchLog | None, now: datetime
) -> str:
    """The first reason, in this order, that the provider cannot be used; else "available"."""
    blocked = bool(state and state.blocked_until and state.blocked_until > now)
    checks = (
        ("no_client", not _has_client(provider.code)),
        ("disabled", not provider.is_enabled),
        ("no_key", provider.requires_api_key and not provider.has_api_key),
        ("circuit_open", circuit_now == CircuitState.State.OPEN),
        ("blocked", blocked),
        ("half_open", circuit_now == CircuitState.State.HALF_OPEN),
        ("unreachable", last is not None and last.outcome in UNREACHABLE),
    )
    return next((word for word, applies in checks if applies), "available")


def _provider_health(
    provider: DataProvider, state: CircuitState | None, stats: dict | None, *, window: float
) -> ProviderHealth:
    now = timezone.now()
    circuit_now = circuit.circuit_state_of(state)
    budget = rate_limit_budget(provider_code=provider.code, budget=provider.rate_limit_per_minute, window=window)
    # Newest first along the (provider, created_at) index: a few rows read, however long the log.
    last = FetchLog.objects.filter(provider=provider.code, attempt__gte=1).order_by("-created_at", "-id").first()
    availability = _availability(provider, state, circuit_now, last, now)
    retry_at = None
    if state and state.opened_at and circuit_now == CircuitState.State.OPEN:
        retry_at = state.opened_at + timedelta(seconds=circuit.recovery_seconds())
    return ProviderHealth(
        code=provider.code,
        name=provider.name,
        priority=provider.priority,
        enabled=provider.is_enabled,
        requires_api_key=provider.requires_api_key,
        has_api_key=provider.has_api_key,
        availability=availability,
        available=availability in {"available", "half_open"},
        circuit_state=circuit_now,
        consecutive_failures=state.consecutive_failures if state else 0,
        retry_at=retry_at,
        blocked_until=state.blocked_until if state and state.blocked_until and state.blocked_until > now else None,
        budget_limit=budget.limit,
        budget_used=budget.used,
        budget_remaining=budget.remaining,
        calls_24h=stats["total"] if stats else 0,
        success_rate_24h=round(stats["ok"] / stats["total"], 4) if stats and stats["total"] else None,
        last_error=state.last_error if state else "",
        last_success_at=state.last_success_at if state else None,
        last_failure_at=state.last_failure_at if state else None,
    )
