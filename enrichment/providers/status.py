"""Read side of the provider machinery: per-provider health for the status API
and the admin page, and the asset-enrichment summary."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, Q
from django.utils import timezone

from enrichment.models import AssetEnrichmentRun, CircuitState, FetchLog
from enrichment.providers import circuit, client_class
from enrichment.providers.base import ProviderError, provider_setting
from enrichment.providers.ratelimit import rate_limit_budget
from etl.models import DataProvider, DeadLetter, Symbol

# Outcomes that mean "we could not reach it" rather than "it answered badly".
UNREACHABLE = {"unreachable", "timeout"}


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


def providers_status() -> list[ProviderHealth]:
    """One entry per data provider, in priority order. Never shows a key, only whether one is set."""
    since = timezone.now() - timedelta(hours=24)
    calls = {
        row["provider"]: row
        for row in FetchLog.objects.filter(created_at__gte=since, attempt__gte=1)
        .values("provider")
        .annotate(total=Count("id"), ok=Count("id", filter=Q(outcome="ok")))
    }
    states = {s.provider: s for s in CircuitState.objects.all()}
    window = provider_setting("RATE_WINDOW_SECONDS", 60.0)
    now = timezone.now()
    out = []
    for provider in DataProvider.objects.order_by("priority", "code"):
        state = states.get(provider.code)
        circuit_now = circuit.circuit_state(provider.code)
        budget = rate_limit_budget(provider_code=provider.code, budget=provider.rate_limit_per_minute, window=window)
        last = FetchLog.objects.filter(provider=provider.code, attempt__gte=1).order_by("-id").first()
        try:
            client_class(provider.code)
            has_client = True
        except ProviderError:
            has_client = False
        if not has_client:
            availability = "no_client"
        elif not provider.is_enabled:
            availability = "disabled"
        elif provider.requires_api_key and not provider.has_api_key:
            availability = "no_key"
        elif circuit_now == CircuitState.State.OPEN:
            availability = "circuit_open"
        elif state and state.blocked_until and state.blocked_until > now:
            availability = "blocked"
        elif circuit_now == CircuitState.State.HALF_OPEN:
            availability = "half_open"
        elif last is not None and last.outcome in UNREACHABLE:
            availability = "unreachable"
        else:
            availability = "available"
        stats = calls.get(provider.code)
        out.append(
            ProviderHealth(
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
                retry_at=(
                    state.opened_at + timedelta(seconds=circuit.recovery_seconds())
                    if state and state.opened_at and circuit_now == CircuitState.State.OPEN
                    else None
                ),
                blocked_until=state.blocked_until
                if state and state.blocked_until and state.blocked_until > now
                else None,
                budget_limit=budget.limit,
                budget_used=budget.used,
                budget_remaining=budget.remaining,
                calls_24h=stats["total"] if stats else 0,
                success_rate_24h=round(stats["ok"] / stats["total"], 4) if stats and stats["total"] else None,
                last_error=state.last_error if state else "",
                last_success_at=state.last_success_at if state else None,
                last_failure_at=state.last_failure_at if state else None,
            )
        )
    return out


def enrichment_status(*, stale_days: int = 30) -> dict[str, Any]:
    """How much of the symbol catalogue is enriched, its quality, the latest runs and open dead letters."""
    cutoff = timezone.now() - timedelta(days=stale_days)
    agg = Symbol.objects.filter(is_active=True).aggregate(
        total=Count("id"),
        enriched=Count("id", filter=Q(enriched_at__isnull=False)),
        never=Count("id", filter=Q(enriched_at__isnull=True)),
        stale=Count("id", filter=Q(enriched_at__lt=cutoff)),
        scored=Count("id", filter=Q(data_quality_score__isnull=False)),
        average_quality=Avg("data_quality_score"),
    )
    runs = [
        {
            "id": r.pk,
            "status": r.status,
            "requested_by": r.requested_by,
            "created_at": r.created_at,
            "finished_at": r.finished_at,
            "total": r.symbols_total,
            "enriched": r.enriched,
            "partial": r.partial,
            "failed": r.failed,
            "dead_lettered": r.dead_lettered,
            "percent": r.percent,
            "error": r.error,
        }
        for r in AssetEnrichmentRun.objects.order_by("-created_at")[:10]
    ]
    total = agg["total"] or 0
    return {
        "symbols": total,
        "enriched": agg["enriched"],
        "never_enriched": agg["never"],
        "stale": agg["stale"],
        "stale_days": stale_days,
        "coverage_percent": round(100 * agg["enriched"] / total, 2) if total else None,
        "average_quality": round(agg["average_quality"], 1) if agg["average_quality"] is not None else None,
        "open_dead_letters": DeadLetter.objects.filter(kind="enrichment", resolved_at__isnull=True).count(),
        "runs": runs,
    }
