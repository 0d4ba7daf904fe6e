"""The provider layer's own state: the fetch log, circuit breaker state, rate-limit
grants, and the provider-status page (a proxy over etl's data providers)."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _

from etl.models import DataProvider

__all__ = ["FetchLog", "CircuitState", "RateLimitGrant", "ProviderStatus"]


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
        verbose_name = _("fetch log")
        verbose_name_plural = _("fetch logs")
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
        verbose_name = _("circuit state")
        verbose_name_plural = _("circuit states")
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


# The provider-status admin page lives over etl's data providers without editing etl/admin.py.
class ProviderStatus(DataProvider):
    class Meta:
        proxy = True
        verbose_name = _("provider status")
        verbose_name_plural = _("provider status")
