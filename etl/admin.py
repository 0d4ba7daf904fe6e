from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from etl import services
from etl.errors import DomainError
from etl.models import (
    AssetClass,
    DataCorrection,
    DataProvider,
    DeadLetter,
    Market,
    MarketData,
    Symbol,
    SymbolMapping,
    TradingSession,
)

AUDIT_FIELDS = ("created_at", "updated_at")


@admin.register(AssetClass)
class AssetClassAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "is_active", "updated_at")
    list_filter = ("is_active",)
    search_fields = ("code", "name")
    readonly_fields = AUDIT_FIELDS
    change_list_template = "admin/etl/assetclass/change_list.html"

    def get_urls(self):
        extra = [
            path(
                "bootstrap/",
                self.admin_site.admin_view(self.bootstrap_view),
                name="etl_reference_bootstrap",
            )
        ]
        return extra + super().get_urls()

    def bootstrap_view(self, request: HttpRequest):
        """Confirm, then run the bootstrap (the same service as the API and command)."""
        if not request.user.has_perm("etl.bootstrap_reference_data"):
            self.message_user(request, "You need the 'bootstrap reference data' permission.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:etl_assetclass_changelist"))
        if request.method == "POST":
            overwrite = request.POST.get("overwrite") == "on"
            result = services.reference_data_bootstrap(overwrite=overwrite)
            report = services.reference_data_validate()
            self.message_user(
                request,
                f"Bootstrap done: {result.total_created} created, {result.total_updated} updated. "
                f"Validation: {len(report.problems)} problem(s).",
                messages.SUCCESS if report.ok else messages.WARNING,
            )
            for problem in report.problems:
                self.message_user(request, problem.message, messages.WARNING)
            return HttpResponseRedirect(reverse("admin:etl_assetclass_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Bootstrap reference data",
            "status": services.bootstrap_status(),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/etl/bootstrap_confirm.html", context)


class TradingSessionInline(admin.TabularInline):
    model = TradingSession
    extra = 0


@admin.register(Market)
class MarketAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "mic", "timezone", "currency", "country", "default_asset_class", "is_active")
    list_filter = ("is_active", "currency", "timezone")
    search_fields = ("code", "name", "mic")
    readonly_fields = AUDIT_FIELDS
    inlines = [TradingSessionInline]
    actions = ["validate_reference_data"]

    @admin.action(description="Validate reference data")
    def validate_reference_data(self, request, queryset):
        report = services.reference_data_validate()
        if not report.problems:
            self.message_user(request, "Reference data is consistent.", messages.SUCCESS)
        for problem in report.problems:
            level = messages.ERROR if problem.severity == "error" else messages.WARNING
            self.message_user(request, problem.message, level)


@admin.register(TradingSession)
class TradingSessionAdmin(admin.ModelAdmin):
    list_display = ("market", "name", "start_weekday", "start_time", "end_weekday", "end_time", "is_active")
    list_filter = ("market", "is_active")
    readonly_fields = AUDIT_FIELDS


@admin.register(DataProvider)
class DataProviderAdmin(admin.ModelAdmin):
    list_display = (
        "code",
        "name",
        "base_url",
        "priority",
        "rate_limit_per_minute",
        "requires_api_key",
        "key_set",
        "is_enabled",
    )
    list_filter = ("is_enabled", "requires_api_key")
    search_fields = ("code", "name")
    readonly_fields = AUDIT_FIELDS

    @admin.display(boolean=True, description="key in env")
    def key_set(self, obj: DataProvider) -> bool:
        return obj.has_api_key


class SymbolMappingInline(admin.TabularInline):
    model = SymbolMapping
    extra = 0
    readonly_fields = ("validated_at", "is_valid")


@admin.register(Symbol)
class SymbolAdmin(admin.ModelAdmin):
    list_display = (
        "ticker",
        "market",
        "asset_class",
        "name",
        "base_currency",
        "quote_currency",
        "is_active",
        "data_quality_score",
        "source",
        "enriched_at",
    )
    list_filter = ("market", "asset_class", "is_active", "source")
    search_fields = ("ticker", "name")
    list_select_related = ("market", "asset_class")
    readonly_fields = (*AUDIT_FIELDS, "enriched_at", "enrichment_attempted_at", "inference_confidence")
    inlines = [SymbolMappingInline]


@admin.register(SymbolMapping)
class SymbolMappingAdmin(admin.ModelAdmin):
    list_display = ("symbol", "provider", "provider_symbol", "origin", "is_valid", "validated_at")
    list_filter = ("provider", "origin", "is_valid")
    search_fields = ("symbol__ticker", "provider_symbol")
    list_select_related = ("symbol", "provider")
    autocomplete_fields = ("symbol",)
    readonly_fields = (*AUDIT_FIELDS, "validated_at", "is_valid")


@admin.register(MarketData)
class MarketDataAdmin(admin.ModelAdmin):
    list_display = ("ticker", "market", "timeframe", "ts", "open", "high", "low", "close", "volume", "asset_class")
    list_filter = ("market", "timeframe", "asset_class")
    search_fields = ("ticker",)
    date_hierarchy = "ts"
    raw_id_fields = ("symbol",)
    readonly_fields = ("created_at", "updated_at", "import_job_id", "source_file")
    # Counting millions of candles on every page load is too slow.
    show_full_result_count = False


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(DataCorrection)
class DataCorrectionAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "kind",
        "run_ref",
        "ticker",
        "market",
        "field",
        "old_value",
        "new_value",
        "row_count",
        "created_by",
    )
    list_filter = ("kind", "table_name", "market")
    search_fields = ("ticker", "run_ref", "created_by")
    date_hierarchy = "created_at"


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ("created_at", "kind", "ref", "attempts", "short_error", "resubmitted_at", "resolved_at")
    list_filter = ("kind", ("resolved_at", admin.EmptyFieldListFilter))
    search_fields = ("ref", "error")
    readonly_fields = ("kind", "ref", "payload", "error", "attempts", "created_at", "resubmitted_at", "resolved_at")

    @admin.display(description="error")
    def short_error(self, obj: DeadLetter) -> str:
        return obj.error[:120]


def message_domain_error(modeladmin: admin.ModelAdmin, request: HttpRequest, exc: DomainError) -> None:
    """How every admin action shows a refused request."""
    modeladmin.message_user(request, exc.message, messages.ERROR)
