"""Admin of the provider layer: the provider status page (circuit, budget, success
rate; action: reset circuit), the fetch log and the circuit states."""

from __future__ import annotations

import threading

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from enrichment.providers.circuit import circuits_reset
from enrichment.providers.models import CircuitState, FetchLog, ProviderStatus
from enrichment.providers.selectors import providers_status

RUN_PERM = "enrichment.run_enrichment"


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ProviderStatus)
class ProviderStatusAdmin(ReadOnly):
    """One row per provider: availability, circuit, budget, success rate, last error."""

    list_display = (
        "code",
        "priority",
        "availability",
        "circuit",
        "budget",
        "success_rate",
        "last_error",
        "key_set",
    )
    actions = ["reset_circuit"]
    ordering = ("priority", "code")

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_staff

    # Health is computed once per page (all providers in one pass), kept per thread
    # because one ModelAdmin instance serves every request.
    _local = threading.local()

    def changelist_view(self, request, extra_context=None):
        self._local.health = {h.code: h for h in providers_status()}
        return super().changelist_view(request, extra_context)

    def _health(self, code: str):
        health = getattr(self._local, "health", None) or {}
        if code not in health:
            health = self._local.health = {h.code: h for h in providers_status()}
        return health[code]

    @admin.display(description=_("availability"))
    def availability(self, obj):
        h = self._health(obj.code)
        colour = "green" if h.available else "#b00"
        return format_html('<b style="color:{}">{}</b>', colour, h.availability_label)

    @admin.display(description=_("circuit"))
    def circuit(self, obj):
        h = self._health(obj.code)
        retry = (
            gettext(", retry at %(when)s") % {"when": f"{timezone.localtime(h.retry_at):%H:%M:%S}"}
            if h.retry_at
            else ""
        )
        return gettext("%(state)s (%(failures)s failures%(retry)s)") % {
            "state": h.circuit_label,
            "failures": h.consecutive_failures,
            "retry": retry,
        }

    @admin.display(description=_("budget left"))
    def budget(self, obj):
        h = self._health(obj.code)
        return f"{h.budget_remaining}/{h.budget_limit}"

    @admin.display(description=_("success 24h"))
    def success_rate(self, obj):
        h = self._health(obj.code)
        return (
            "-"
            if h.success_rate_24h is None
            else gettext("%(percent).0f%% of %(calls)s")
            % {
                "percent": 100 * h.success_rate_24h,
                "calls": h.calls_24h,
            }
        )

    @admin.display(description=_("last error"))
    def last_error(self, obj):
        return self._health(obj.code).last_error[:120]

    @admin.display(description=_("key set"), boolean=True)
    def key_set(self, obj) -> bool:
        return obj.has_api_key

    def has_run_enrichment_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(RUN_PERM)

    @admin.action(description=_("Reset (close) the circuit"), permissions=["run_enrichment"])
    def reset_circuit(self, request, queryset):
        """Calls circuits_reset."""
        closed = circuits_reset(provider_codes=list(queryset.values_list("code", flat=True)))
        self.message_user(request, gettext("Closed %(count)s circuit(s).") % {"count": closed}, messages.SUCCESS)


@admin.register(FetchLog)
class FetchLogAdmin(ReadOnly):
    list_display = (
        "created_at",
        "provider",
        "endpoint",
        "symbol",
        "attempt",
        "status_code",
        "outcome",
        "duration_ms",
        "bytes",
    )
    list_filter = ("provider", "outcome", "endpoint")
    search_fields = ("symbol", "error")
    date_hierarchy = "created_at"
    show_full_result_count = False


@admin.register(CircuitState)
class CircuitStateAdmin(ReadOnly):
    list_display = ("provider", "state", "consecutive_failures", "opened_at", "blocked_until", "last_error")
