from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, pgettext
from django.utils.translation import gettext_lazy as _
from django_q import admin as django_q_admin
from django_q.models import Schedule

from etl import selectors, services
from etl.admin_tools import RecordAdmin, admin_each
from etl.errors import DomainError
from etl.forms import PipelineScheduleForm
from etl.models import (
    ApiToken,
    AssetClass,
    DataCorrection,
    DataProvider,
    DeadLetter,
    IntegritySummary,
    Market,
    MarketClosure,
    MarketData,
    PipelineRun,
    PipelineStepRun,
    RunStatus,
    SummaryRecount,
    Symbol,
    SymbolMapping,
    TradingSession,
)
from etl.pipeline import registered_steps
from etl.services import summaries as summary_services
from etl.services.integrity import severity_label, verdict_label
from etl.services.pipeline import SUCCEEDED_WITH_WARNINGS, outcome_label, run_gates, run_outcome
from etl.services.schedules import schedule_run_now, schedule_run_permission
from etl.services.tokens import api_token_issue, api_token_revoke

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
            self.message_user(request, gettext("You need the 'bootstrap reference data' permission."), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:etl_assetclass_changelist"))
        if request.method == "POST":
            overwrite = request.POST.get("overwrite") == "on"
            result = services.reference_data_bootstrap(overwrite=overwrite)
            report = services.reference_data_validate()
            self.message_user(
                request,
                gettext(
                    "Bootstrap done: %(created)s created, %(updated)s updated. Validation: %(problems)s problem(s)."
                )
                % {"created": result.total_created, "updated": result.total_updated, "problems": len(report.problems)},
                messages.SUCCESS if report.ok else messages.WARNING,
            )
            for problem in report.problems:
                self.message_user(request, problem.message, messages.WARNING)
            return HttpResponseRedirect(reverse("admin:etl_assetclass_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Bootstrap reference data"),
            "status": services.bootstrap_status(),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/etl/bootstrap_confirm.html", context)


class TradingSessionInline(admin.TabularInline):
    model = TradingSession
    extra = 0


class MarketClosureInline(admin.TabularInline):
    model = MarketClosure
    extra = 0
    fields = ("day", "close_at", "reason")


@admin.register(Market)
class MarketAdmin(admin.ModelAdmin):
    list_display = (
        "code",
        "name",
        "mic",
        "calendar_code",
        "timezone",
        "currency",
        "country",
        "default_asset_class",
        "is_active",
    )
    list_filter = ("is_active", "currency", "timezone")
    search_fields = ("code", "name", "mic")
    readonly_fields = AUDIT_FIELDS
    inlines = [TradingSessionInline, MarketClosureInline]
    actions = ["validate_reference_data"]

    @admin.action(description=_("Validate reference data"))
    def validate_reference_data(self, request, queryset):
        report = services.reference_data_validate()
        if not report.problems:
            self.message_user(request, gettext("Reference data is consistent."), messages.SUCCESS)
        for problem in report.problems:
            level = messages.ERROR if problem.severity == "error" else messages.WARNING
            self.message_user(request, problem.message, level)


@admin.register(MarketClosure)
class MarketClosureAdmin(admin.ModelAdmin):
    """Operator overrides of a market's calendar: unscheduled closures and early closes."""

    list_display = ("market", "day", "close_at", "reason")
    list_filter = ("market",)
    date_hierarchy = "day"
    readonly_fields = AUDIT_FIELDS


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

    @admin.display(boolean=True, description=_("key in env"))
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


class CodeListFilter(admin.SimpleListFilter):
    """A filter whose choices come from a small reference table: Django's default filter for a
    plain column lists its values with a SELECT DISTINCT over every candle."""

    model: type = Market

    def lookups(self, request, model_admin):
        return [(code, code) for code in self.model.objects.order_by("code").values_list("code", flat=True)]

    def queryset(self, request, queryset):
        return queryset.filter(**{self.parameter_name: self.value()}) if self.value() else queryset


class MarketCodeFilter(CodeListFilter):
    title = _("market")
    parameter_name = "market"
    model = Market


class AssetClassCodeFilter(CodeListFilter):
    title = _("asset class")
    parameter_name = "asset_class"
    model = AssetClass


@admin.register(MarketData)
class MarketDataAdmin(admin.ModelAdmin):
    list_display = ("ticker", "market", "timeframe", "ts", "open", "high", "low", "close", "volume", "asset_class")
    list_filter = (MarketCodeFilter, AssetClassCodeFilter)
    search_fields = ("ticker",)
    # The primary key's order: the page reads the first rows of each partition's key index
    # (ordering by id or ts would sort every candle). No date hierarchy: it lists the years
    # with a scan of all candles.
    ordering = ("market", "ticker", "timeframe", "ts")
    raw_id_fields = ("symbol",)
    readonly_fields = ("updated_at", "import_file")
    exclude = ("import_file_id",)
    # Counting millions of candles on every page load is too slow.
    show_full_result_count = False

    @admin.display(description=_("import file"))
    def import_file(self, obj: MarketData) -> str:
        """A link to the file the candle came from (etl names no import app: by URL name)."""
        if obj.import_file_id is None:
            return "-"
        try:
            url = reverse("admin:batchimport_importfile_change", args=[obj.import_file_id])
        except NoReverseMatch:
            return str(obj.import_file_id)
        return format_html('<a href="{}">#{}</a>', url, obj.import_file_id)


class ReadOnlyAdmin(RecordAdmin):
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
class DeadLetterAdmin(RecordAdmin):
    list_display = ("created_at", "kind", "ref", "attempts", "short_error", "resubmitted_at", "resolved_at")
    list_filter = ("kind", ("resolved_at", admin.EmptyFieldListFilter))
    search_fields = ("ref", "error")
    readonly_fields = ("kind", "ref", "payload", "error", "attempts", "created_at", "resubmitted_at", "resolved_at")

    @admin.display(description=_("error"))
    def short_error(self, obj: DeadLetter) -> str:
        return obj.error[:120]


def message_domain_error(modeladmin: admin.ModelAdmin, request: HttpRequest, exc: DomainError) -> None:
    """How every admin action shows a refused request."""
    modeladmin.message_user(request, exc.message, messages.ERROR)


# ---------------------------------------------------------------------------
# Pipeline runs, symbol sync and symbol clean-up


STATUS_COLOURS = {
    RunStatus.SUCCEEDED: "#2e7d32",
    RunStatus.FAILED: "#c62828",
    RunStatus.RUNNING: "#1565c0",
    RunStatus.QUEUED: "#757575",
    RunStatus.SKIPPED: "#9e9e9e",
    RunStatus.CANCELLED: "#ef6c00",
}


def _chip(name: str, status: str):
    colour = STATUS_COLOURS.get(status, "#757575")
    return format_html(
        '<span title="{}" style="background:{};color:#fff;padding:1px 6px;border-radius:8px;margin-right:2px">'
        "{}</span>",
        outcome_label(status),
        colour,
        name,
    )


def _gate_verdict(gate: dict):
    if gate.get("breached"):
        colour = STATUS_COLOURS[RunStatus.FAILED] if gate["severity"] == "error" else "#ef6c00"
        return format_html(
            '<strong style="color:{}">{}</strong>',
            colour,
            gettext("breached (%(severity)s)") % {"severity": severity_label(gate["severity"])},
        )
    if gate.get("passed") is None:
        return gettext("not measured")
    return pgettext("gate", "passed") if gate.get("passed") else gettext("failed (off)")


class PipelineStepRunInline(admin.TabularInline):
    model = PipelineStepRun
    extra = 0
    can_delete = False
    fields = ("order", "name", "status", "started_at", "finished_at", "duration", "counts", "error")
    readonly_fields = fields

    @admin.display(description=_("seconds"))
    def duration(self, obj: PipelineStepRun):
        return None if obj.duration_seconds is None else round(obj.duration_seconds, 2)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a record of what was done (see etl.admin_tools.RecordAdmin)

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(PipelineRun)
class PipelineRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "outcome", "trigger", "requested_by", "started_at", "duration", "steps", "short_error")
    list_filter = ("status", "trigger")
    search_fields = ("requested_by", "error")
    date_hierarchy = "created_at"
    fields = (
        "status",
        "outcome",
        "gate_table",
        "trigger",
        "requested_by",
        "created_at",
        "started_at",
        "finished_at",
        "duration",
        "steps_requested",
        "options",
        "continue_on_failure",
        "max_seconds",
        "cancel_requested",
        "error",
        "summary",
        "timeline",
    )
    readonly_fields = fields
    inlines = [PipelineStepRunInline]
    change_list_template = "admin/etl/pipelinerun/change_list.html"
    actions = ["cancel_runs", "run_again"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("step_runs")

    @admin.display(description=_("seconds"))
    def duration(self, obj: PipelineRun):
        return None if obj.duration_seconds is None else round(obj.duration_seconds, 1)

    @admin.display(description=_("steps"))
    def steps(self, obj: PipelineRun):
        return format_html_join("", "{}", ((_chip(s.name, s.status),) for s in obj.step_runs.all()))

    @admin.display(description=_("error"))
    def short_error(self, obj: PipelineRun) -> str:
        return obj.error[:120]

    @admin.display(description=_("outcome"), ordering="status")
    def outcome(self, obj: PipelineRun):
        outcome = run_outcome(obj)
        colour = "#ef6c00" if outcome == SUCCEEDED_WITH_WARNINGS else STATUS_COLOURS.get(outcome, "#757575")
        return format_html('<span style="color:{};font-weight:bold">{}</span>', colour, outcome_label(outcome))

    @admin.display(description=_("quality gates"))
    def gate_table(self, obj: PipelineRun):
        """Each gate the validate step checked: value against threshold, severity, verdict."""
        gates = run_gates(obj)
        if not gates:
            return "-"
        rows = [
            (
                g["name"],
                "-" if g.get("value") is None else f"{g['value']:g}",
                f"{g['op']} {g['threshold']:g}",
                severity_label(g["severity"]),
                _gate_verdict(g),
            )
            for g in gates
        ]
        headers = (gettext("gate"), gettext("value"), gettext("needs"), gettext("severity"), gettext("result"))
        return format_html(
            "<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>",
            format_html_join("", "<th>{}</th>", ((header,) for header in headers)),
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    @admin.display(description=_("timeline"))
    def timeline(self, obj: PipelineRun):
        """One bar per step, placed and sized by when it ran within the run."""
        steps = list(obj.step_runs.all())
        if not obj.started_at or not steps:
            return "-"
        end = obj.finished_at or max((s.finished_at or obj.started_at) for s in steps)
        total = max((end - obj.started_at).total_seconds(), 1e-6)
        rows = []
        for s in steps:
            start = ((s.started_at or obj.started_at) - obj.started_at).total_seconds()
            length = (s.duration_seconds or 0.0) if s.started_at else 0.0
            left, width = 100 * start / total, max(100 * length / total, 0.5)
            colour = STATUS_COLOURS.get(s.status, "#757575")
            rows.append((s.name, outcome_label(s.status), f"{left:.2f}", f"{width:.2f}", colour, f"{length:.2f}s"))
        return format_html(
            '<div style="min-width:480px">{}</div>',
            format_html_join(
                "",
                '<div style="display:flex;align-items:center;margin:2px 0"><span style="width:90px">{}</span>'
                '<span style="flex:1;position:relative;height:14px;background:#eee">'
                '<span title="{}" style="position:absolute;left:{}%;width:{}%;height:14px;background:{}"></span>'
                '</span><span style="width:70px;text-align:right">{}</span></div>',
                rows,
            ),
        )

    def has_run_permission(self, request) -> bool:
        return request.user.has_perm("etl.run_pipeline")

    @admin.action(description=_("Cancel selected runs"), permissions=["run"])
    def cancel_runs(self, request, queryset):
        n = sum(services.pipeline_cancel(run=run) for run in queryset)
        self.message_user(request, gettext("Asked %(count)s run(s) to stop.") % {"count": n}, messages.SUCCESS)

    @admin.action(description=_("Run again with the same steps and options (background)"), permissions=["run"])
    def run_again(self, request, queryset):
        for run in queryset[:1]:
            try:
                new = services.pipeline_rerun(run=run, requested_by=request.user.get_username())
            except DomainError as exc:
                message_domain_error(self, request, exc)
                return
            self.message_user(request, gettext("Queued pipeline run #%(run)s.") % {"run": new.pk}, messages.SUCCESS)

    def get_urls(self):
        extra = [
            path("run/", self.admin_site.admin_view(self.run_view), name="etl_pipeline_run"),
            path("sync-symbols/", self.admin_site.admin_view(self.sync_view), name="etl_symbols_sync"),
            path("schedule/", self.admin_site.admin_view(self.schedule_view), name="etl_pipeline_schedule"),
        ]
        return extra + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        integrity = selectors.integrity_status()
        extra_context = {
            **(extra_context or {}),
            "integrity": integrity,
            "integrity_verdict": verdict_label(integrity["status"]),
        }
        return super().changelist_view(request, extra_context=extra_context)

    def run_view(self, request: HttpRequest):
        """Choose steps and options, then run now or queue (the same services as the API and command)."""
        changelist = reverse("admin:etl_pipelinerun_changelist")
        if not request.user.has_perm("etl.run_pipeline"):
            self.message_user(request, gettext("You need the 'run the ETL pipeline' permission."), messages.ERROR)
            return HttpResponseRedirect(changelist)
        if request.method == "POST":
            p = request.POST
            try:
                minutes = float(p["max_minutes"]) if p.get("max_minutes") else None
            except ValueError:
                self.message_user(request, gettext("Maximum minutes must be a number."), messages.ERROR)
                return HttpResponseRedirect(request.path)
            kwargs = {
                "steps": p.getlist("steps") or None,
                "options": {"path": p["path"]} if p.get("path") else {},
                "continue_on_failure": p.get("continue_on_failure") == "on",
                "max_seconds": round(minutes * 60) if minutes else None,
                "trigger": "admin",
                "requested_by": request.user.get_username(),
            }
            try:
                if p.get("background") == "on":
                    run = services.pipeline_queue(**kwargs)
                    self.message_user(
                        request, gettext("Queued pipeline run #%(run)s.") % {"run": run.pk}, messages.SUCCESS
                    )
                    return HttpResponseRedirect(changelist)
                result = services.pipeline_run(**kwargs)
            except DomainError as exc:
                message_domain_error(self, request, exc)
                return HttpResponseRedirect(changelist)
            level = messages.SUCCESS if result.ok else messages.WARNING
            self.message_user(
                request,
                (
                    gettext("Pipeline run #%(run)s: %(status)s.")
                    % {"run": result.run_id, "status": outcome_label(result.status)}
                    + f" {result.error}"
                ).strip(),
                level,
            )
            return HttpResponseRedirect(reverse("admin:etl_pipelinerun_change", args=[result.run_id]))
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Run the ETL pipeline"),
            "steps": registered_steps(),
            "running": services.pipeline_in_progress(),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/etl/pipeline_run_form.html", context)

    def schedule_view(self, request: HttpRequest):
        """A recurring pipeline run -> services.pipeline_schedule, as the API's schedule-recurring."""
        if not request.user.has_perm("etl.schedule_pipeline"):
            self.message_user(request, gettext("You need the 'schedule the ETL pipeline' permission."), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:etl_pipelinerun_changelist"))
        form = PipelineScheduleForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            d = form.cleaned_data
            try:
                result = services.pipeline_schedule(
                    cron=d["cron"],
                    tz=d["timezone"],
                    name=d["name"],
                    steps=d["steps"] or None,
                    options={"path": d["path"]} if d["path"] else {},
                    continue_on_failure=d["continue_on_failure"],
                    max_seconds=round(d["max_minutes"] * 60) if d["max_minutes"] else None,
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(
                    request,
                    gettext("Schedule %(name)s saved: next run %(next)s.")
                    % {"name": result.name, "next": result.next_run},
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:django_q_schedule_change", args=[result.schedule_id]))
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "title": gettext("Schedule the pipeline"),
            "intro": gettext("The pipeline runs at the cron times in the schedule's time zone, across DST changes."),
            "submit_label": gettext("Save schedule"),
            "changelist": reverse("admin:etl_pipelinerun_changelist"),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/etl/form_page.html", context)

    def sync_view(self, request: HttpRequest):
        """Symbol sync: a dry run shows the plan; a real run reports its counts."""
        changelist = reverse("admin:etl_pipelinerun_changelist")
        if not request.user.has_perm("etl.sync_symbols"):
            self.message_user(request, gettext("You need the 'synchronise symbols' permission."), messages.ERROR)
            return HttpResponseRedirect(changelist)
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Synchronise symbols"),
            "status": selectors.symbol_sync_status(),
            "opts": self.model._meta,
        }
        if request.method == "POST":
            p = request.POST
            result = services.symbols_sync(
                venues=[v for v in p.getlist("venues") if v] or None,
                asset_classes=[c for c in p.getlist("asset_classes") if c] or None,
                dry_run=p.get("dry_run") == "on",
            )
            if result.dry_run:
                return TemplateResponse(request, "admin/etl/symbols_sync.html", {**context, "result": result})
            self.message_user(
                request,
                gettext(
                    "Symbol sync: %(created)s created, %(linked)s candles linked, "
                    "%(without)s still without a symbol, %(unresolved)s pair(s) unresolved."
                )
                % {
                    "created": result.symbols_created,
                    "linked": result.candles_linked,
                    "without": result.candles_without_symbol,
                    "unresolved": result.unresolved_count,
                },
                messages.SUCCESS if result.candles_without_symbol == 0 else messages.WARNING,
            )
            return HttpResponseRedirect(changelist)
        return TemplateResponse(request, "admin/etl/symbols_sync.html", context)


admin.site.unregister(Symbol)


@admin.register(Symbol)
class SymbolCleanupAdmin(SymbolAdmin):
    """The symbol admin plus validate / clean actions on the selected symbols."""

    actions = ["validate_symbols", "clean_symbols"]

    def has_clean_permission(self, request) -> bool:
        return request.user.has_perm("etl.clean_symbols")

    @admin.action(description=_("Validate selected symbols"))
    def validate_symbols(self, request, queryset):
        report = services.symbols_validate_cleanup(symbol_ids=list(queryset.values_list("pk", flat=True)))
        if not report.issues:
            self.message_user(request, gettext("No problems found in the selected symbols."), messages.SUCCESS)
        for issue in report.issues:
            self.message_user(request, f"{issue.code}: {issue.ticker}@{issue.market} {issue.message}", messages.WARNING)

    @admin.action(
        description=_("Clean selected symbols (trim, merge case variants, deactivate)"), permissions=["clean"]
    )
    def clean_symbols(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        fixes = [c for c in services.IssueCode.ALL if c != services.IssueCode.UNLINKED_CANDLES]
        if request.POST.get("confirm") != "yes":
            report = services.symbols_validate_cleanup(symbol_ids=ids)
            context = {
                **self.admin_site.each_context(request),
                "title": gettext("Clean symbols"),
                "report": report,
                "ids": ids,
                "opts": self.model._meta,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(request, "admin/etl/symbols_clean_confirm.html", context)
        result = services.symbols_validate_cleanup(
            fix=True, fixes=fixes, symbol_ids=ids, requested_by=request.user.get_username()
        )
        fixed = sum(result.fixed.values())
        self.message_user(
            request,
            gettext("Fixed %(fixed)s problem(s); %(recorded)s change(s) recorded in the audit trail.")
            % {"fixed": fixed, "recorded": result.corrections_recorded},
            messages.SUCCESS,
        )


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Issue (services.tokens.api_token_issue: the key is shown once) and revoke
    (api_token_revoke) API tokens; a token is never edited or deleted, only revoked."""

    list_display = ("name", "user", "prefix", "created_at", "expires_at", "revoked_at", "last_used_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "user__username", "prefix")
    fields = ("user", "name", "expires_at")
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        return ("user", "name", "expires_at", "prefix", "created_at", "revoked_at", "last_used_at") if obj else ()

    def get_fields(self, request, obj=None):
        return self.get_readonly_fields(request, obj) if obj else self.fields

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        issued = api_token_issue(
            username=obj.user.username, name=obj.name, expires_at=obj.expires_at, issued_by=request.user.username
        )
        obj.pk = issued.token.pk
        self.message_user(
            request,
            gettext("Token issued. Copy the key now, it is not shown again: %(key)s") % {"key": issued.key},
            messages.WARNING,
        )

    @admin.action(description=_("Revoke selected tokens"), permissions=["change"])
    def revoke(self, request, queryset):
        admin_each(self, request, queryset, lambda t: api_token_revoke(token=t), gettext("revoked"))


# django-q2's schedule page, with "Run now". Its own admin module is imported above so that
# its registration exists here to be replaced (etl's admin loads before django_q's).
admin.site.unregister(Schedule)


@admin.register(Schedule)
class ScheduleAdmin(django_q_admin.ScheduleAdmin):
    actions = ["run_now"]
    change_list_template = "admin/etl/schedule/change_list.html"

    @admin.action(description=_("Run now (background; the next run stays as it is)"), permissions=["change"])
    def run_now(self, request, queryset):
        """services.schedules.schedule_run_now on each selected schedule the user may fire."""
        for schedule in queryset:
            permission = schedule_run_permission(schedule)
            if not request.user.has_perm(permission):
                self.message_user(
                    request,
                    gettext("%(name)s: you need the permission %(perm)s to run it.")
                    % {"name": schedule.name or schedule.pk, "perm": permission},
                    messages.ERROR,
                )
                continue
            try:
                result = schedule_run_now(schedule=schedule)
            except DomainError as exc:
                message_domain_error(self, request, exc)
                continue
            self.message_user(
                request,
                gettext("%(name)s queued to run now (task %(task)s).")
                % {"name": result.name or result.schedule_id, "task": result.task_id},
                messages.SUCCESS,
            )


@admin.register(SummaryRecount)
class SummaryRecountAdmin(ReadOnlyAdmin):
    """Recounts of the integrity summaries: what drifted, and a button to recount now."""

    list_display = ("id", "status", "requested_by", "started_at", "finished_at", "drift_count", "repaired")
    list_filter = ("status", "repaired")
    fields = (
        "status",
        "requested_by",
        "repair",
        "sources",
        "created_at",
        "started_at",
        "finished_at",
        "progress_done",
        "progress_total",
        "drift_count",
        "repaired",
        "result",
        "drift",
        "error",
    )
    readonly_fields = fields
    change_list_template = "admin/etl/summaryrecount/change_list.html"
    actions = ["recount_again"]

    def has_recount_permission(self, request) -> bool:
        return request.user.has_perm("etl.recount_summaries")

    @admin.action(description=_("Recount the summaries again (background)"), permissions=["recount"])
    def recount_again(self, request, queryset):
        for run in queryset[:1]:
            new = summary_services.summary_recount_queue(
                requested_by=request.user.get_username(), repair=run.repair, sources=run.sources or None
            )
            self.message_user(request, gettext("Queued summary recount #%(run)s.") % {"run": new.pk}, messages.SUCCESS)

    def get_urls(self):
        extra = [path("recount/", self.admin_site.admin_view(self.recount_view), name="etl_summary_recount")]
        return extra + super().get_urls()

    def recount_view(self, request: HttpRequest):
        """POST: queue a full recount (repairing), the admin door of summary_recount."""
        changelist = reverse("admin:etl_summaryrecount_changelist")
        if request.method != "POST" or not self.has_recount_permission(request):
            self.message_user(request, gettext("You need the 'recount the summaries' permission."), messages.ERROR)
            return HttpResponseRedirect(changelist)
        run = summary_services.summary_recount_queue(requested_by=request.user.get_username())
        self.message_user(request, gettext("Queued summary recount #%(run)s.") % {"run": run.pk}, messages.SUCCESS)
        return HttpResponseRedirect(changelist)


@admin.register(IntegritySummary)
class IntegritySummaryAdmin(ReadOnlyAdmin):
    """The folded summary numbers (pending deltas are added when a page reads them)."""

    list_display = ("metric", "market", "bucket", "value", "updated_at")
    list_filter = ("market",)
    search_fields = ("metric", "market")
