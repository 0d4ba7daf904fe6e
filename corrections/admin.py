"""Correction runs in the admin: analysis and preview on the run page, execute
(queued), validate, cancel, and rollback behind a confirmation page like
Django's delete confirmation. Every action calls the same services."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.formats import number_format
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from corrections import selectors, services
from corrections.models import CorrectionRun, Scope
from etl.admin_tools import RecordAdmin, admin_each
from etl.errors import DomainError

COUNT_COLUMNS = ("total", "correct", "null", "empty", "mismatched", "orphan", "unclassified")
HEADERS = {
    "total": _("total"),
    "correct": _("correct"),
    "null": _("null"),
    "empty": _("empty"),
    "mismatched": _("mismatched"),
    "orphan": _("orphan"),
    "unclassified": _("unclassified"),
    "market": _("market"),
    "asset_class": _("asset class"),
}


def _correction_says(run: CorrectionRun, text: str) -> str:
    return gettext("Correction %(run)s: %(text)s") % {"run": run.pk, "text": text}


def _table(rows: list[dict], key: str) -> str:
    head = format_html_join("", "<th>{}</th>", ((HEADERS.get(c, c),) for c in (key, *COUNT_COLUMNS)))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        ((format_html_join("", "<td>{}</td>", ((row.get(c),) for c in (key, *COUNT_COLUMNS))),) for row in rows),
    )
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


@admin.register(CorrectionRun)
class CorrectionRunAdmin(RecordAdmin):
    list_display = (
        "id",
        "phase",
        "status",
        "scope_label",
        "progress",
        "rows_updated",
        "rows_restored",
        "rollback_conflicts",
        "requested_by",
        "created_at",
    )
    list_filter = ("phase", "status", "only_null", "overwrite_mismatched")
    search_fields = ("requested_by", "rolled_back_by", "rollback_reason")
    actions = ["preview_runs", "execute_runs", "validate_runs", "cancel_runs", "rollback_runs"]
    change_list_template = "admin/corrections/correctionrun/change_list.html"
    fieldsets = (
        (None, {"fields": ("phase", "status", "requested_by", "scope_label", "batch_size", "validate_each_batch")}),
        (
            _("Progress"),
            {
                "fields": (
                    "progress",
                    "rate_per_second",
                    "batches_done",
                    "last_id",
                    "id_low",
                    "id_high",
                    "rows_updated",
                    "backed_up",
                    "started_at",
                    "finished_at",
                    "executed_at",
                    "cancel_requested",
                    "error",
                )
            },
        ),
        (_("Analysis"), {"fields": ("analysis_summary", "analysis_by_market", "analysis_by_class")}),
        (_("Preview"), {"fields": ("preview_summary",)}),
        (_("Validation"), {"fields": ("validation_summary",)}),
        (
            _("Rollback"),
            {
                "fields": (
                    "rollback_reason",
                    "rolled_back_by",
                    "rolled_back_at",
                    "rows_restored",
                    "rollback_conflicts",
                    "rollback_force",
                    "rollback_summary",
                )
            },
        ),
    )

    def get_readonly_fields(self, request, obj=None):
        return [f for fieldset in self.fieldsets for f in fieldset[1]["fields"]]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs start from "New analysis", which records the analysis with them

    def has_execute_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("corrections.execute_correction")

    def has_rollback_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("corrections.rollback_correction")

    # ------------------------------------------------------------ columns

    @admin.display(description=_("scope"))
    def scope_label(self, run: CorrectionRun) -> str:
        return run.scope.label

    @admin.display(description=_("progress"))
    def progress(self, run: CorrectionRun) -> str:
        if run.percent is None:
            return "-"
        eta = (
            gettext(", ETA %(seconds).0f s") % {"seconds": run.eta_seconds}
            if run.status == "running" and run.eta_seconds
            else ""
        )
        done, total = (number_format(n, force_grouping=True) for n in (run.progress_done, run.progress_total))
        return f"{number_format(run.percent, 1)} % ({done}/{total}{eta})"

    @admin.display(description=_("rows backed up"))
    def backed_up(self, run: CorrectionRun) -> int:
        return run.rows_backed_up

    @admin.display(description=_("totals"))
    def analysis_summary(self, run: CorrectionRun) -> str:
        report = run.analyze_report or {}
        if not report:
            return "-"
        totals = report["totals"]
        warnings = format_html_join("", "<li>{}</li>", ((w,) for w in report["warnings"]))
        return format_html(
            "{}<p>{}</p><ul>{}</ul>",
            _table([{"": gettext("all"), **totals}], ""),
            gettext("quality score %(score)s %%, orphans %(orphans)s %%")
            % {"score": report["quality_score"], "orphans": report["orphan_percent"]},
            warnings,
        )

    @admin.display(description=_("by market"))
    def analysis_by_market(self, run: CorrectionRun) -> str:
        return _table((run.analyze_report or {}).get("by_market", []), "market")

    @admin.display(description=_("by asset class (as stored)"))
    def analysis_by_class(self, run: CorrectionRun) -> str:
        return _table((run.analyze_report or {}).get("by_asset_class", []), "asset_class")

    @admin.display(description=_("preview"))
    def preview_summary(self, run: CorrectionRun) -> str:
        report = run.preview_report
        if not report:
            return "-"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{!r}</td><td>{}</td><td>{}</td></tr>",
            (
                (g["ticker"], g["market"], g["from_value"], g["to_value"], g["row_count"])
                for g in report["first_groups"]
            ),
        )
        return format_html(
            "<p>{}</p><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>{}</table>",
            gettext("%(rows)s candles in %(groups)s groups (first groups below)")
            % {"rows": report["total_rows"], "groups": report["total_groups"]},
            gettext("ticker"),
            gettext("market"),
            gettext("from"),
            gettext("to"),
            gettext("rows"),
            rows,
        )

    @admin.display(description=_("report"))
    def validation_summary(self, run: CorrectionRun) -> str:
        return self._json(run.validation_report)

    @admin.display(description=_("report"))
    def rollback_summary(self, run: CorrectionRun) -> str:
        return self._json(run.rollback_report)

    def _json(self, value) -> str:
        return format_html("<pre>{}</pre>", json.dumps(value, indent=2, default=str)) if value else "-"

    # ------------------------------------------------------------ new analysis

    def get_urls(self):
        extra = [path("analyze/", self.admin_site.admin_view(self.analyze_view), name="corrections_analyze")]
        return extra + super().get_urls()

    def analyze_view(self, request: HttpRequest):
        """Options form; POST records a new run with its analysis (reads market_data only)."""
        if not self.has_execute_permission(request):
            self.message_user(request, gettext("You need the 'execute correction' permission."), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:corrections_correctionrun_changelist"))
        if request.method == "POST":
            try:
                batch_size = int(request.POST.get("batch_size") or 50_000)
                run = services.correction_run_create(
                    requested_by=request.user.get_username(),
                    only_null=request.POST.get("scope") == "null",
                    overwrite_mismatched=request.POST.get("scope") == "all",
                    batch_size=batch_size,
                    validate_each_batch=request.POST.get("validate_each_batch") == "on",
                )
            except ValueError:
                self.message_user(request, gettext("Batch size must be a whole number."), messages.ERROR)
            except DomainError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, gettext("Correction %(run)s analyzed.") % {"run": run.pk}, messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:corrections_correctionrun_change", args=[run.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("New asset-class correction"),
            "opts": self.model._meta,
            "scopes": Scope.choices,
        }
        return TemplateResponse(request, "admin/corrections/correctionrun/analyze.html", context)

    # ------------------------------------------------------------ actions

    @admin.action(description=_("Preview the changes of selected runs"), permissions=["view"])
    def preview_runs(self, request, queryset):
        admin_each(
            self,
            request,
            queryset,
            lambda run: services.correction_preview(run=run),
            gettext("{r.total_rows} candles would change in {r.total_groups} groups."),
            label=gettext("Correction"),
        )

    @admin.action(description=_("Execute selected runs (background)"), permissions=["execute"])
    def execute_runs(self, request, queryset):
        admin_each(
            self,
            request,
            queryset,
            lambda run: services.correction_execute_queue(run=run),
            gettext("queued."),
            label=gettext("Correction"),
        )

    @admin.action(description=_("Validate selected runs"), permissions=["execute"])
    def validate_runs(self, request, queryset):
        for run in queryset:
            try:
                result = services.correction_validate(run=run)
            except DomainError as exc:
                self.message_user(request, _correction_says(run, exc.message), messages.ERROR)
                continue
            failed = "; ".join(f"{c.name}: {c.detail}" for c in result.checks if not c.ok)
            verdict = gettext("valid") if result.ok else gettext("INVALID — %(failed)s") % {"failed": failed}
            self.message_user(
                request,
                _correction_says(
                    run,
                    gettext("%(verdict)s (quality score %(score)s %%).")
                    % {"verdict": verdict, "score": result.quality_score},
                ),
                messages.SUCCESS if result.ok else messages.ERROR,
            )
            for warning in result.warnings:
                self.message_user(request, _correction_says(run, warning), messages.WARNING)

    @admin.action(description=_("Cancel selected runs after their current batch"), permissions=["execute"])
    def cancel_runs(self, request, queryset):
        admin_each(
            self,
            request,
            queryset,
            lambda run: services.correction_cancel(run=run),
            gettext("cancel requested."),
            label=gettext("Correction"),
        )

    @admin.action(description=_("Roll back selected runs…"), permissions=["rollback"])
    def rollback_runs(self, request, queryset):
        """First a confirmation page (what will be restored, the conflicts, a
        reason); the POST from that page does the rollback."""
        runs = list(queryset)
        reason = request.POST.get("reason", "").strip()
        if request.POST.get("post") == "yes" and reason:
            force = request.POST.get("force") == "on"
            for run in runs:
                try:
                    r = services.correction_rollback(
                        run=run, reason=reason, force=force, requested_by=request.user.get_username()
                    )
                except DomainError as exc:
                    self.message_user(request, _correction_says(run, exc.message), messages.ERROR)
                    continue
                level = messages.WARNING if r.conflicts > r.conflicts_restored else messages.SUCCESS
                self.message_user(
                    request,
                    gettext(
                        "Correction %(run)s rolled back: %(restored)s candles restored, %(conflicts)s changed "
                        "after the run (%(forced)s restored by force), %(missing)s deleted since."
                    )
                    % {
                        "run": run.pk,
                        "restored": r.rows_restored,
                        "conflicts": r.conflicts,
                        "forced": r.conflicts_restored,
                        "missing": r.missing,
                    },
                    level,
                )
            return None
        rows = []
        for run in runs:
            refusal = selectors.rollback_refusal(run=run)
            preflight = None if refusal else selectors.rollback_preflight(run=run)
            rows.append({"run": run, "refusal": refusal, "preflight": preflight})
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Are you sure?"),
            "opts": self.model._meta,
            "rows": rows,
            "queryset": queryset,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "reason_missing": request.POST.get("post") == "yes" and not reason,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/corrections/correctionrun/rollback_confirmation.html", context)
