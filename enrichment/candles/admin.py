"""Admin of the candle side: the v2 table, status with charts, runs, logs, quality, backfills."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from enrichment.candles.charts import chart_figures
from enrichment.candles.forms import BackfillCreateForm
from enrichment.candles.models import (
    BackfillState,
    DataQualityMetric,
    EnrichmentComputeLog,
    EnrichmentStatus,
    FeatureRun,
    LiveMarket,
    LiveSeries,
    MarketDataV2,
)
from enrichment.candles.services.backfill import backfills_cancel, backfills_queue
from enrichment.candles.services.backfill_create import backfills_create
from enrichment.candles.services.feature_runs import feature_run_queue, feature_runs_cancel
from enrichment.candles.services.live import live_poll_queue
from etl.errors import DomainError


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(MarketDataV2)
class MarketDataV2Admin(ReadOnly):
    list_display = (
        "symbol",
        "timeframe",
        "ts",
        "close",
        "volume",
        "atr_14",
        "rsi_14",
        "quality_score",
        "flags",
        "revision",
        "source",
    )
    list_filter = ("timeframe", "source", "revision")
    # The primary key's order: each partition's key index gives the first page (ordering by id,
    # Django's default, would sort every row: the id index is BRIN, docs/storage.md).
    ordering = ("symbol_id", "timeframe", "ts")
    search_fields = ("symbol__ticker",)
    raw_id_fields = ("symbol",)
    list_select_related = ("symbol",)
    show_full_result_count = False  # counting millions of rows on every page is too slow

    @admin.display(description=_("flags"))
    def flags(self, obj: MarketDataV2) -> str:
        return ", ".join(obj.flag_names)


@admin.register(EnrichmentStatus)
class EnrichmentStatusAdmin(ReadOnly):
    list_display = (
        "symbol",
        "timeframe",
        "state",
        "rows",
        "last_ts",
        "completeness",
        "avg_quality_score",
        "last_computed_at",
        "chart_link",
    )
    list_filter = ("state", "timeframe", "symbol__market")
    search_fields = ("symbol__ticker",)
    list_select_related = ("symbol", "symbol__market")
    actions = ["compute_features", "compute_features_full"]

    def has_compute_permission(self, request) -> bool:
        return request.user.has_perm("enrichment.compute_features")

    @admin.display(description=_("chart"))
    def chart_link(self, obj: EnrichmentStatus) -> str:
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:enrichment_chart", args=[obj.pk]), gettext("chart & quality")
        )

    def _queue(self, request, queryset, *, full: bool) -> None:
        symbols = sorted({str(s.symbol_id) for s in queryset})
        run = feature_run_queue(
            symbols=symbols,
            timeframes=sorted({s.timeframe for s in queryset}),
            full=full,
            requested_by=request.user.get_username(),
        )
        self.message_user(
            request,
            gettext("Queued feature run %(run)s for %(count)s symbol(s).") % {"run": run.pk, "count": len(symbols)},
            messages.SUCCESS,
        )

    @admin.action(description=_("Compute features (background)"), permissions=["compute"])
    def compute_features(self, request, queryset):
        """Calls feature_run_queue."""
        self._queue(request, queryset, full=False)

    @admin.action(description=_("Recompute all features (background)"), permissions=["compute"])
    def compute_features_full(self, request, queryset):
        """Calls feature_run_queue (full)."""
        self._queue(request, queryset, full=True)

    def get_urls(self):
        extra = [
            path("<int:pk>/chart/", self.admin_site.admin_view(self.chart_view), name="enrichment_chart"),
        ]
        return extra + super().get_urls()

    def chart_view(self, request: HttpRequest, pk: int):
        """Calls chart_figures."""
        status = get_object_or_404(EnrichmentStatus.objects.select_related("symbol__market"), pk=pk)
        figures = chart_figures(symbol=status.symbol, timeframe=status.timeframe)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{status.symbol.ticker}@{status.symbol.market.code} {status.timeframe}",
            "status": status,
            "figures": figures,
            "opts": self.model._meta,
            "logs": EnrichmentComputeLog.objects.filter(symbol=status.symbol, timeframe=status.timeframe)[:10],
        }
        return TemplateResponse(request, "admin/enrichment/chart.html", context)


@admin.register(FeatureRun)
class FeatureRunAdmin(ReadOnly):
    list_display = ("id", "kind", "status", "requested_by", "created_at", "progress", "duration", "error_short")
    list_filter = ("kind", "status")
    readonly_fields = [f.name for f in FeatureRun._meta.fields]
    actions = ["cancel"]

    def has_compute_permission(self, request) -> bool:
        return request.user.has_perm("enrichment.compute_features")

    @admin.display(description=_("progress"))
    def progress(self, obj: FeatureRun) -> str:
        return f"{obj.progress_done}/{obj.progress_total or '?'}"

    @admin.display(description=_("seconds"))
    def duration(self, obj: FeatureRun) -> str:
        return f"{obj.duration_seconds:.1f}" if obj.duration_seconds is not None else ""

    @admin.display(description=_("error"))
    def error_short(self, obj: FeatureRun) -> str:
        return obj.error[:100]

    @admin.action(description=_("Cancel (between batches)"), permissions=["compute"])
    def cancel(self, request, queryset):
        """Calls feature_runs_cancel."""
        asked = feature_runs_cancel(runs=queryset)
        self.message_user(request, gettext("Asked %(count)s run(s) to stop.") % {"count": asked}, messages.SUCCESS)


@admin.register(EnrichmentComputeLog)
class EnrichmentComputeLogAdmin(ReadOnly):
    list_display = (
        "created_at",
        "symbol",
        "timeframe",
        "mode",
        "rows_read",
        "rows_written",
        "duration_ms",
        "succeeded",
        "run",
    )
    list_filter = ("mode", "succeeded", "timeframe")
    search_fields = ("symbol__ticker",)
    list_select_related = ("symbol",)


@admin.register(DataQualityMetric)
class DataQualityMetricAdmin(ReadOnly):
    list_display = (
        "symbol",
        "timeframe",
        "day",
        "expected_bars",
        "actual_bars",
        "completeness",
        "gaps",
        "volume_anomalies",
        "ohlc_inconsistencies",
        "outside_session",
        "avg_quality_score",
    )
    list_filter = ("timeframe", "symbol__market")
    search_fields = ("symbol__ticker",)
    date_hierarchy = "day"
    list_select_related = ("symbol",)


@admin.register(BackfillState)
class BackfillStateAdmin(ReadOnly):
    list_display = (
        "symbol",
        "timeframe",
        "source",
        "state",
        "percent_done",
        "last_completed_ts",
        "attempts",
        "next_retry_at",
        "rows_written",
        "locked_by",
    )
    list_filter = ("state", "source", "timeframe")
    search_fields = ("symbol__ticker",)
    actions = ["run_now", "cancel"]

    def has_backfill_permission(self, request) -> bool:
        return request.user.has_perm("enrichment.run_backfill")

    @admin.display(description="%")
    def percent_done(self, obj: BackfillState) -> str:
        return f"{obj.percent:.0f}" if obj.percent is not None else ""

    change_list_template = "admin/enrichment/backfillstate/change_list.html"

    def get_urls(self):
        create = path("create/", self.admin_site.admin_view(self.create_view), name="enrichment_backfill_create")
        return [create, *super().get_urls()]

    def create_view(self, request: HttpRequest):
        """Create backfills -> backfill_create.backfills_create, as POST /api/runs/backfills/."""
        changelist = reverse("admin:enrichment_backfillstate_changelist")
        if not request.user.has_perm("enrichment.run_backfill"):
            self.message_user(request, gettext("You need the 'run a backfill' permission."), messages.ERROR)
            return HttpResponseRedirect(changelist)
        form = BackfillCreateForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            d = form.cleaned_data
            try:
                created = backfills_create(
                    symbols=d["symbols"],
                    timeframes=d["timeframes"],
                    source=d["source"],
                    start=d["start"],
                    end=d["end"],
                    chunk_bars=d["chunk_bars"],
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(
                    request,
                    gettext("%(count)s backfill(s) planned, %(queued)s queued.")
                    % {"count": len(created.states), "queued": created.queued},
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(changelist)
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "title": gettext("Create backfills"),
            "intro": gettext(
                "Each symbol × timeframe is backfilled from the source chunk by chunk on the workers, resumable; "
                "an existing backfill of the same series is widened and keeps its progress."
            ),
            "submit_label": gettext("Create and queue"),
            "changelist": changelist,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/etl/form_page.html", context)

    @admin.action(description=_("Run backfill now (background)"), permissions=["backfill"])
    def run_now(self, request, queryset):
        """Calls backfills_queue."""
        queued = backfills_queue(states=queryset)
        self.message_user(request, gettext("Queued %(count)s backfill(s).") % {"count": queued}, messages.SUCCESS)

    @admin.action(description=_("Cancel backfill (its worker stops at the next chunk)"), permissions=["backfill"])
    def cancel(self, request, queryset):
        """Calls backfills_cancel."""
        cancelled = backfills_cancel(states=queryset)
        self.message_user(request, gettext("Cancelled %(count)s backfill(s).") % {"count": cancelled}, messages.SUCCESS)


@admin.register(LiveMarket)
class LiveMarketAdmin(admin.ModelAdmin):
    """Live ingestion per market: on/off, timeframe, source, freshness target and critical lag."""

    list_display = ("market", "is_enabled", "timeframe", "source", "freshness_target_seconds", "critical_seconds")
    list_editable = ("is_enabled",)
    list_select_related = ("market",)
    actions = ["poll_now"]

    @admin.action(description=_("Poll now (background)"), permissions=["run_live_poll"])
    def poll_now(self, request: HttpRequest, queryset) -> None:
        markets = live_poll_queue(markets=[live.market.code for live in queryset.select_related("market")])
        if markets:
            message = gettext("Queued a poll of %(markets)s.") % {"markets": ", ".join(markets)}
        else:
            message = gettext("Nothing to poll.")
        self.message_user(request, message, messages.SUCCESS)

    def has_run_live_poll_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("enrichment.run_live_poll")


@admin.register(LiveSeries)
class LiveSeriesAdmin(admin.ModelAdmin):
    """Each live series: on/off per symbol, its newest bar, lag and last error."""

    list_display = (
        "symbol",
        "timeframe",
        "is_enabled",
        "last_bar_ts",
        "last_lag_seconds",
        "last_stored_at",
        "bars_stored",
        "last_error",
    )
    list_editable = ("is_enabled",)
    list_filter = ("is_enabled", "timeframe", "symbol__market")
    search_fields = ("symbol__ticker",)
    raw_id_fields = ("symbol",)
    list_select_related = ("symbol",)
    readonly_fields = ("last_bar_ts", "last_stored_at", "last_lag_seconds", "last_polled_at", "bars_stored")
