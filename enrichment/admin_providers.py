"""Admin of the provider side: provider status page, "enrich selected" on
symbols, the mapping editor, enrichment dead letters with resubmit, runs and
the fetch log. Pages over etl's tables use this app's proxy models, so
etl/admin.py stays untouched."""

from __future__ import annotations

import threading
from functools import partial

from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpRequest
from django.utils.html import format_html

from enrichment.models import (
    AssetEnrichmentResult,
    AssetEnrichmentRun,
    CircuitState,
    EnrichmentDeadLetter,
    FetchLog,
    ProviderMapping,
    ProviderStatus,
    SymbolForEnrichment,
)
from enrichment.providers import circuit
from enrichment.providers import status as provider_status
from enrichment.services import assets, mapping
from etl.errors import DomainError
from etl.models import SymbolMapping

RUN_PERM = "enrichment.run_enrichment"


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class RunEnrichmentPermission:
    def has_run_enrichment_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(RUN_PERM)


@admin.register(ProviderStatus)
class ProviderStatusAdmin(RunEnrichmentPermission, ReadOnly):
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
        self._local.health = {h.code: h for h in provider_status.providers_status()}
        return super().changelist_view(request, extra_context)

    def _health(self, code: str):
        health = getattr(self._local, "health", None) or {}
        if code not in health:
            health = self._local.health = {h.code: h for h in provider_status.providers_status()}
        return health[code]

    @admin.display(description="availability")
    def availability(self, obj):
        h = self._health(obj.code)
        colour = "green" if h.available else "#b00"
        return format_html('<b style="color:{}">{}</b>', colour, h.availability)

    @admin.display(description="circuit")
    def circuit(self, obj):
        h = self._health(obj.code)
        retry = f", retry at {h.retry_at:%H:%M:%S}" if h.retry_at else ""
        return f"{h.circuit_state} ({h.consecutive_failures} failures{retry})"

    @admin.display(description="budget left")
    def budget(self, obj):
        h = self._health(obj.code)
        return f"{h.budget_remaining}/{h.budget_limit}"

    @admin.display(description="success 24h")
    def success_rate(self, obj):
        h = self._health(obj.code)
        return "-" if h.success_rate_24h is None else f"{100 * h.success_rate_24h:.0f}% of {h.calls_24h}"

    @admin.display(description="last error")
    def last_error(self, obj):
        return self._health(obj.code).last_error[:120]

    @admin.display(description="key set", boolean=True)
    def key_set(self, obj) -> bool:
        return obj.has_api_key

    @admin.action(description="Reset (close) the circuit", permissions=["run_enrichment"])
    def reset_circuit(self, request, queryset):
        for code in queryset.values_list("code", flat=True):
            circuit.circuit_reset(code)
        self.message_user(request, f"Closed {queryset.count()} circuit(s).", messages.SUCCESS)


@admin.register(SymbolForEnrichment)
class SymbolEnrichmentAdmin(RunEnrichmentPermission, ReadOnly):
    list_display = ("ticker", "market", "asset_class", "name", "data_quality_score", "enriched_at", "source")
    list_filter = ("market", "asset_class", ("enriched_at", admin.EmptyFieldListFilter))
    search_fields = ("ticker", "name")
    list_select_related = ("market", "asset_class")
    actions = ["enrich_selected", "infer_mappings"]

    @admin.action(description="Enrich selected symbols (background)", permissions=["run_enrichment"])
    def enrich_selected(self, request, queryset):
        ids = tuple(queryset.values_list("pk", flat=True))
        run = assets.asset_enrichment_queue(
            options=assets.EnrichOptions(symbol_ids=ids, selection="all"), requested_by=request.user.get_username()
        )
        self.message_user(request, f"Queued enrichment run #{run.pk} for {len(ids)} symbol(s).", messages.SUCCESS)

    @admin.action(description="Infer missing provider mappings", permissions=["run_enrichment"])
    def infer_mappings(self, request, queryset):
        result = mapping.mappings_ensure(symbols=queryset)
        self.message_user(request, f"Created {result.created} mapping(s).", messages.SUCCESS)


@admin.register(ProviderMapping)
class ProviderMappingAdmin(RunEnrichmentPermission, admin.ModelAdmin):
    """The mapping editor: edit provider spellings in the list; an edit marks the mapping manual."""

    list_display = ("symbol", "provider", "provider_symbol", "origin", "is_valid", "validated_at")
    list_editable = ("provider_symbol",)
    list_filter = ("provider", "origin", "is_valid")
    search_fields = ("symbol__ticker", "provider_symbol")
    list_select_related = ("symbol", "symbol__market", "provider")
    autocomplete_fields = ("symbol",)
    readonly_fields = ("origin", "validated_at", "is_valid")
    actions = ["validate_selected"]

    def save_model(self, request, obj, form, change) -> None:
        if not change or "provider_symbol" in form.changed_data:
            obj.origin = SymbolMapping.Origin.MANUAL
            obj.is_valid = None
            obj.validated_at = None
        super().save_model(request, obj, form, change)

    @admin.action(description="Validate against the provider", permissions=["run_enrichment"])
    def validate_selected(self, request, queryset):
        valid = invalid = 0
        for m in queryset.select_related("provider")[:50]:
            try:
                if mapping.mapping_validate(mapping=m):
                    valid += 1
                else:
                    invalid += 1
            except DomainError as exc:
                self.message_user(request, exc.message, messages.ERROR)
        level = messages.SUCCESS if not invalid else messages.WARNING
        self.message_user(request, f"{valid} valid, {invalid} not known to the provider.", level)


@admin.register(EnrichmentDeadLetter)
class EnrichmentDeadLetterAdmin(RunEnrichmentPermission, ReadOnly):
    list_display = ("created_at", "ref", "attempts", "short_error", "resubmitted_at", "resolved_at")
    list_filter = (("resolved_at", admin.EmptyFieldListFilter),)
    search_fields = ("ref", "error")
    actions = ["resubmit"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(kind=assets.DEAD_LETTER_KIND)

    @admin.display(description="error")
    def short_error(self, obj) -> str:
        return obj.error[:160]

    @admin.action(description="Resubmit (background)", permissions=["run_enrichment"])
    def resubmit(self, request, queryset):
        from django_q.tasks import async_task

        ids = list(queryset.filter(resolved_at__isnull=True).values_list("pk", flat=True))
        if not ids:
            self.message_user(request, "Nothing to resubmit: the selected letters are resolved.", messages.WARNING)
            return
        transaction.on_commit(
            partial(
                async_task,
                "enrichment.tasks_assets.dead_letters_resubmit",
                ids,
                request.user.get_username(),
                group="enrichment",
            )
        )
        self.message_user(request, f"Resubmitted {len(ids)} dead letter(s).", messages.SUCCESS)


class ResultInline(admin.TabularInline):
    model = AssetEnrichmentResult
    extra = 0
    can_delete = False
    fields = ("symbol", "outcome", "quality_score", "completeness", "freshness", "agreement", "fields_updated", "error")
    readonly_fields = fields
    raw_id_fields = ("symbol",)

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AssetEnrichmentRun)
class AssetEnrichmentRunAdmin(ReadOnly):
    list_display = ("id", "status", "requested_by", "created_at", "symbols_total", "enriched", "partial", "failed",
                    "dead_lettered", "progress")  # fmt: skip
    list_filter = ("status",)
    inlines = [ResultInline]
    actions = ["cancel"]

    @admin.display(description="progress")
    def progress(self, obj) -> str:
        return "-" if obj.percent is None else f"{obj.percent:.0f}%"

    def has_run_enrichment_permission(self, request) -> bool:
        return request.user.has_perm(RUN_PERM)

    @admin.action(description="Cancel (between batches)", permissions=["run_enrichment"])
    def cancel(self, request, queryset):
        n = queryset.filter(status__in=["queued", "running"]).update(cancel_requested=True)
        self.message_user(request, f"Asked {n} run(s) to stop.", messages.SUCCESS)


@admin.register(FetchLog)
class FetchLogAdmin(ReadOnly):
    list_display = ("created_at", "provider", "endpoint", "symbol", "attempt", "status_code", "outcome",
                    "duration_ms", "bytes")  # fmt: skip
    list_filter = ("provider", "outcome", "endpoint")
    search_fields = ("symbol", "error")
    date_hierarchy = "created_at"
    show_full_result_count = False


@admin.register(CircuitState)
class CircuitStateAdmin(ReadOnly):
    list_display = ("provider", "state", "consecutive_failures", "opened_at", "blocked_until", "last_error")
