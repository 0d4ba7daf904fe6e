"""Admin of asset enrichment: "enrich selected" on symbols, the mapping editor,
enrichment dead letters with resubmit, and the runs. Pages over etl's tables use
this app's proxy models, so etl/admin.py stays untouched."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from enrichment.assets.models import (
    DEAD_LETTER_KIND,
    AssetEnrichmentResult,
    AssetEnrichmentRun,
    EnrichmentDeadLetter,
    ProviderMapping,
    SymbolForEnrichment,
)
from enrichment.assets.services.dead_letters import enrichment_dead_letters_resubmit_queue
from enrichment.assets.services.enrich import asset_enrichment_queue, asset_enrichment_runs_cancel
from enrichment.assets.services.enrich_options import EnrichOptions
from enrichment.assets.services.mapping import mapping_edit_record, mappings_ensure, mappings_validate
from etl.errors import DomainError

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


@admin.register(SymbolForEnrichment)
class SymbolEnrichmentAdmin(RunEnrichmentPermission, ReadOnly):
    list_display = ("ticker", "market", "asset_class", "name", "data_quality_score", "enriched_at", "source")
    list_filter = ("market", "asset_class", ("enriched_at", admin.EmptyFieldListFilter))
    search_fields = ("ticker", "name")
    list_select_related = ("market", "asset_class")
    actions = ["enrich_selected", "infer_mappings"]

    @admin.action(description=_("Enrich selected symbols (background)"), permissions=["run_enrichment"])
    def enrich_selected(self, request, queryset):
        """Calls asset_enrichment_queue."""
        ids = tuple(queryset.values_list("pk", flat=True))
        run = asset_enrichment_queue(
            options=EnrichOptions(symbol_ids=ids, selection="all"), requested_by=request.user.get_username()
        )
        self.message_user(
            request,
            gettext("Queued enrichment run #%(run)s for %(count)s symbol(s).") % {"run": run.pk, "count": len(ids)},
            messages.SUCCESS,
        )

    @admin.action(description=_("Infer missing provider mappings"), permissions=["run_enrichment"])
    def infer_mappings(self, request, queryset):
        """Calls mappings_ensure."""
        result = mappings_ensure(symbols=queryset)
        self.message_user(
            request, gettext("Created %(count)s mapping(s).") % {"count": result.created}, messages.SUCCESS
        )


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
        """Calls mapping_edit_record."""
        mapping_edit_record(mapping=obj, spelling_changed=not change or "provider_symbol" in form.changed_data)

    @admin.action(description=_("Validate against the provider"), permissions=["run_enrichment"])
    def validate_selected(self, request, queryset):
        """Calls mappings_validate on the first 50 selected."""
        tally = mappings_validate(mappings=queryset.select_related("provider")[:50])
        for message in tally.refused:
            self.message_user(request, message, messages.ERROR)
        level = messages.SUCCESS if not tally.invalid else messages.WARNING
        self.message_user(
            request,
            gettext("%(valid)s valid, %(invalid)s not known to the provider.")
            % {"valid": tally.valid, "invalid": tally.invalid},
            level,
        )


@admin.register(EnrichmentDeadLetter)
class EnrichmentDeadLetterAdmin(RunEnrichmentPermission, ReadOnly):
    list_display = ("created_at", "ref", "attempts", "short_error", "resubmitted_at", "resolved_at")
    list_filter = (("resolved_at", admin.EmptyFieldListFilter),)
    search_fields = ("ref", "error")
    actions = ["resubmit"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(kind=DEAD_LETTER_KIND)

    @admin.display(description=_("error"))
    def short_error(self, obj) -> str:
        return obj.error[:160]

    @admin.action(description=_("Resubmit (background)"), permissions=["run_enrichment"])
    def resubmit(self, request, queryset):
        """Calls enrichment_dead_letters_resubmit_queue."""
        try:
            queued = enrichment_dead_letters_resubmit_queue(
                ids=list(queryset.values_list("pk", flat=True)), requested_by=request.user.get_username()
            )
        except DomainError:
            self.message_user(
                request, gettext("Nothing to resubmit: the selected letters are resolved."), messages.WARNING
            )
            return
        self.message_user(
            request, gettext("Resubmitted %(count)s dead letter(s).") % {"count": queued}, messages.SUCCESS
        )


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
class AssetEnrichmentRunAdmin(RunEnrichmentPermission, ReadOnly):
    list_display = (
        "id",
        "status",
        "requested_by",
        "created_at",
        "symbols_total",
        "enriched",
        "partial",
        "failed",
        "dead_lettered",
        "progress",
    )
    list_filter = ("status",)
    inlines = [ResultInline]
    actions = ["cancel"]

    @admin.display(description=_("progress"))
    def progress(self, obj) -> str:
        return "-" if obj.percent is None else f"{obj.percent:.0f}%"

    @admin.action(description=_("Cancel (between batches)"), permissions=["run_enrichment"])
    def cancel(self, request, queryset):
        """Calls asset_enrichment_runs_cancel."""
        asked = asset_enrichment_runs_cancel(runs=queryset)
        self.message_user(request, gettext("Asked %(count)s run(s) to stop.") % {"count": asked}, messages.SUCCESS)
