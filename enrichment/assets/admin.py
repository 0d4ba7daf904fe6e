"""Admin of asset enrichment: "enrich selected" on symbols, the mapping editor,
enrichment dead letters with resubmit, and the runs. Pages over etl's tables use
this app's proxy models, so etl/admin.py stays untouched."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
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
from enrichment.assets.services.discovery import symbols_discover
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


class DiscoverForm(forms.Form):
    """discovery.symbols_discover's arguments, as POST /api/etl/discover-symbols takes them."""

    provider = forms.ChoiceField(label=_("provider"), choices=[("BINANCE", "BINANCE")], initial="BINANCE")
    quote_assets = forms.CharField(
        label=_("quote assets"),
        max_length=200,
        initial="USDT",
        help_text=_("Comma-separated, e.g. USDT, USDC; empty: every quote asset"),
        required=False,
    )

    def quote_asset_list(self) -> tuple[str, ...]:
        text = self.cleaned_data["quote_assets"] or ""
        return tuple(part.strip().upper() for part in text.split(",") if part.strip())


@admin.register(SymbolForEnrichment)
class SymbolEnrichmentAdmin(RunEnrichmentPermission, ReadOnly):
    change_list_template = "admin/enrichment/symbolforenrichment/change_list.html"
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

    def get_urls(self):
        discover = path("discover/", self.admin_site.admin_view(self.discover_view), name="enrichment_discover")
        return [discover, *super().get_urls()]

    def discover_view(self, request: HttpRequest):
        """Symbol discovery -> discovery.symbols_discover, as POST /api/etl/discover-symbols."""
        changelist = reverse("admin:enrichment_symbolforenrichment_changelist")
        if not request.user.has_perm(RUN_PERM):
            self.message_user(request, gettext("You need the 'run asset enrichment' permission."), messages.ERROR)
            return HttpResponseRedirect(changelist)
        form = DiscoverForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                result = symbols_discover(
                    provider_code=form.cleaned_data["provider"], quote_assets=form.quote_asset_list()
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(
                    request,
                    gettext(
                        "Discovery from %(provider)s: %(listed)s listed, %(created)s new symbol(s), "
                        "%(existing)s known, %(mappings)s mapping(s) added."
                    )
                    % {
                        "provider": result.provider,
                        "listed": result.listed,
                        "created": result.created,
                        "existing": result.existing,
                        "mappings": result.mappings_created,
                    },
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(changelist)
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "title": gettext("Discover symbols"),
            "intro": gettext(
                "Creates a symbol, with its provider mapping, for every perpetual contract the provider lists "
                "in these quote assets; known symbols are left as they are."
            ),
            "submit_label": gettext("Discover"),
            "changelist": changelist,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/etl/form_page.html", context)

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
