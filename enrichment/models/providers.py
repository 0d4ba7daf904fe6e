"""Provider-side models: fetch log, circuit breaker state, rate-limit grants,
asset-enrichment runs and their per-symbol results, and the admin proxies."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now

from etl.models import DataProvider, DeadLetter, RunRecord, Symbol, SymbolMapping

__all__ = [
    "FetchLog",
    "CircuitState",
    "RateLimitGrant",
    "AssetEnrichmentRun",
    "AssetEnrichmentResult",
    "ProviderStatus",
    "SymbolForEnrichment",
    "ProviderMapping",
    "EnrichmentDeadLetter",
]


class FetchLog(models.Model):
    """One row per HTTP attempt (a retried call writes one row per attempt)."""

    provider = models.CharField(max_length=32)
    endpoint = models.CharField(max_length=64)
    symbol = models.CharField(max_length=64, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.FloatField()
    attempt = models.PositiveSmallIntegerField(default=1)
    bytes = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=24, help_text="ok, throttled, server_error, timeout, malformed, ...")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_default=Now(), db_index=True)

    class Meta:
        db_table = "enrichment_fetch_log"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["provider", "-created_at"], name="fetch_log_provider_time")]

    def __str__(self) -> str:
        return f"{self.provider} {self.endpoint} {self.symbol} #{self.attempt} {self.outcome}"


class CircuitState(models.Model):
    """Per-provider circuit breaker, shared by every worker on every host."""

    class State(models.TextChoices):
        CLOSED = "closed"
        OPEN = "open"
        HALF_OPEN = "half_open"

    provider = models.CharField(max_length=32, unique=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.CLOSED)
    consecutive_failures = models.PositiveIntegerField(default=0)
    consecutive_successes = models.PositiveIntegerField(default=0)
    opened_at = models.DateTimeField(null=True, blank=True)
    probe_started_at = models.DateTimeField(null=True, blank=True, help_text="When the half-open trial call began")
    blocked_until = models.DateTimeField(
        null=True, blank=True, help_text="The provider asked us (Retry-After) to stay away until then"
    )
    last_error = models.TextField(blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True, db_default=Now())

    class Meta:
        db_table = "enrichment_circuit_state"
        ordering = ["provider"]

    def __str__(self) -> str:
        return f"{self.provider}: {self.state}"


class RateLimitGrant(models.Model):
    """One granted request (with its weight). The sum over the last window is
    what a provider has spent of its budget; old rows are pruned as we go."""

    provider = models.CharField(max_length=32)
    weight = models.PositiveIntegerField(default=1)
    granted_at = models.DateTimeField()

    class Meta:
        db_table = "enrichment_rate_grants"
        indexes = [models.Index(fields=["provider", "granted_at"], name="rate_grant_provider_time")]


class AssetEnrichmentRun(RunRecord):
    """One asset-enrichment run: what was asked, and the outcome counts."""

    options = models.JSONField(default=dict)
    symbols_total = models.PositiveIntegerField(default=0)
    enriched = models.PositiveIntegerField(default=0)
    partial = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    dead_lettered = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "enrichment_asset_runs"
        ordering = ["-created_at"]
        permissions = [("run_enrichment", "Can run asset enrichment and resubmit its dead letters")]

    def __str__(self) -> str:
        return f"asset enrichment #{self.pk} {self.status}"


class AssetEnrichmentResult(models.Model):
    """The outcome for one symbol in one run, with its quality dimensions."""

    class Outcome(models.TextChoices):
        ENRICHED = "enriched"
        PARTIAL = "partial"
        FAILED = "failed"

    run = models.ForeignKey(AssetEnrichmentRun, on_delete=models.CASCADE, related_name="results")
    symbol = models.ForeignKey(Symbol, on_delete=models.CASCADE, related_name="enrichment_results")
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    sources = models.JSONField(default=dict, help_text="per source: ok / empty / failed / unavailable, and why")
    fields_updated = models.JSONField(default=list)
    quality_score = models.PositiveSmallIntegerField(null=True, blank=True)
    completeness = models.FloatField(null=True, blank=True)
    freshness = models.FloatField(null=True, blank=True)
    agreement = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_default=Now())

    class Meta:
        db_table = "enrichment_asset_results"
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["run", "symbol"], name="uniq_enrichment_result_run_symbol")]

    def __str__(self) -> str:
        return f"{self.symbol_id} {self.outcome}"


# Admin proxies: pages of this app over etl's tables, so the enrichment admin
# (provider status, "enrich selected", mapping editor, dead-letter resubmit) lives
# here without editing etl/admin.py.
class ProviderStatus(DataProvider):
    class Meta:
        proxy = True
        verbose_name = "provider status"
        verbose_name_plural = "provider status"


class SymbolForEnrichment(Symbol):
    class Meta:
        proxy = True
        verbose_name = "symbol enrichment"
        verbose_name_plural = "symbol enrichment"


class ProviderMapping(SymbolMapping):
    class Meta:
        proxy = True
        verbose_name = "provider symbol mapping"
        verbose_name_plural = "provider symbol mappings (editor)"


class EnrichmentDeadLetter(DeadLetter):
    class Meta:
        proxy = True
        verbose_name = "enrichment dead letter"
        verbose_name_plural = "enrichment dead letters"
