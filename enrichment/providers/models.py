"""The provider layer's own state: the fetch log, circuit breaker state, rate-limit
grants, and the provider-status page (a proxy over etl's data providers)."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from etl.models import DataProvider

__all__ = ["FetchLog", "CircuitState", "RateLimitGrant", "ProviderStatus"]


class FetchLog(models.Model):
    """One row per HTTP attempt (a retried call writes one row per attempt)."""

    provider = models.CharField(_("provider"), max_length=32)
    endpoint = models.CharField(_("endpoint"), max_length=64)
    symbol = models.CharField(_("symbol"), max_length=64, blank=True)
    status_code = models.PositiveSmallIntegerField(_("status code"), null=True, blank=True)
    duration_ms = models.FloatField(_("duration (ms)"))
    attempt = models.PositiveSmallIntegerField(_("attempt"), default=1)
    bytes = models.PositiveIntegerField(_("bytes"), default=0)
    outcome = models.CharField(
        _("outcome"), max_length=24, help_text=_("ok, throttled, server_error, timeout, malformed, ...")
    )
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_default=Now(), db_index=True)

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
        CLOSED = "closed", pgettext_lazy("circuit", "Closed")
        OPEN = "open", pgettext_lazy("circuit", "Open")
        HALF_OPEN = "half_open", pgettext_lazy("circuit", "Half-open")

    provider = models.CharField(_("provider"), max_length=32, unique=True)
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.CLOSED)
    consecutive_failures = models.PositiveIntegerField(_("consecutive failures"), default=0)
    consecutive_successes = models.PositiveIntegerField(_("consecutive successes"), default=0)
    opened_at = models.DateTimeField(_("opened at"), null=True, blank=True)
    probe_started_at = models.DateTimeField(
        _("probe started at"), null=True, blank=True, help_text=_("When the half-open trial call began")
    )
    blocked_until = models.DateTimeField(
        _("blocked until"),
        null=True,
        blank=True,
        help_text=_("The provider asked us (Retry-After) to stay away until then"),
    )
    last_error = models.TextField(_("last error"), blank=True)
    last_failure_at = models.DateTimeField(_("last failure at"), null=True, blank=True)
    last_success_at = models.DateTimeField(_("last success at"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, db_default=Now())

    class Meta:
        verbose_name = _("circuit state")
        verbose_name_plural = _("circuit states")
        db_table = "enrichment_circuit_state"
        ordering = ["provider"]

    def __str__(self) -> str:
        return f"{self.provider}: {self.get_state_display()}"


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
