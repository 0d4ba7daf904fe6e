"""Operators' console for imports: start, watch, cancel, retry, rejects, dead letters."""

from __future__ import annotations

import csv

from django.contrib import admin, messages
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.formats import number_format
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from batchimport import selectors, services
from batchimport.forms import ImportScheduleForm, StartImportForm
from batchimport.models import TERMINAL, ImportDeadLetter, ImportFile, ImportJob, MarketImportSettings, RejectedRow
from batchimport.services.paths import data_root
from etl.admin_tools import RecordAdmin, admin_each
from etl.errors import DomainError

SLA_STATES = {
    "breached": _("breached"),
    "at risk": _("at risk"),
    "on track": _("on track"),
    "met": _("met"),
    "not started": _("not started"),
}


def _progress_bar(obj) -> str:
    percent = obj.percent or (100.0 if obj.status in TERMINAL else 0.0)
    css = "import-running" if obj.status == "running" else ""
    shown = f"{percent:.0f}"
    return format_html('<progress class="{}" max="100" value="{}" style="width:8em"></progress> {}%', css, shown, shown)


class ImportFileInline(admin.TabularInline):
    model = ImportFile
    extra = 0
    can_delete = False
    fields = [
        "relpath",
        "status",
        "layout",
        "timeframe",
        "rows_read",
        "rows_inserted",
        "rows_duplicates",
        "rows_updated",
        "rows_rejected",
        "attempts",
        "error",
    ]
    readonly_fields = fields
    show_change_link = True

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a record of what was done (see etl.admin_tools.RecordAdmin)

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ImportJob)
class ImportJobAdmin(RecordAdmin):
    change_list_template = "admin/batchimport/importjob/change_list.html"
    list_display = [
        "id",
        "kind",
        "market",
        "status",
        "progress",
        "files_summary",
        "rows_read",
        "rows_inserted",
        "rows_rejected",
        "rate",
        "eta",
        "sla",
        "started_at",
        "requested_by",
    ]
    list_filter = ["status", "kind", "market", "sla_breached"]
    search_fields = ["path", "requested_by", "schedule_name"]
    readonly_fields = [f.name for f in ImportJob._meta.fields]
    inlines = [ImportFileInline]
    actions = ["cancel_jobs", "retry_jobs"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description=_("progress"))
    def progress(self, obj: ImportJob) -> str:
        return _progress_bar(obj)

    @admin.display(description=_("files"))
    def files_summary(self, obj: ImportJob) -> str:
        return gettext("%(done)s/%(total)s (%(skipped)s skipped, %(failed)s failed)") % {
            "done": obj.files_done,
            "total": obj.files_total,
            "skipped": obj.files_skipped,
            "failed": obj.files_failed,
        }

    # Bytes per row by market, read once per change list (the ETA of jobs without a rate of their own).
    _per_row: dict = {}

    def changelist_view(self, request, extra_context=None):
        self._per_row = {}
        return super().changelist_view(request, extra_context=extra_context)

    @admin.display(description=_("rows/s"))
    def rate(self, obj: ImportJob) -> str:
        observed = number_format(obj.rows_per_second, 0, force_grouping=True) if obj.rows_per_second else "—"
        if not obj.expected_rows_per_second:
            return observed
        return gettext("%(observed)s (expected %(expected)s)") % {
            "observed": observed,
            "expected": number_format(obj.expected_rows_per_second, 0, force_grouping=True),
        }

    @admin.display(description=_("ETA"))
    def eta(self, obj: ImportJob) -> str:
        """selectors.job_timing: the job's own rate, or the market's expected rate before it has one."""
        timing = selectors.job_timing(job=obj, per_row=self._per_row)
        if timing.eta_seconds is None:
            return "—"
        minutes = number_format(timing.eta_seconds / 60, 1, force_grouping=True)
        if timing.eta_basis == "expected_rate":
            return gettext("%(minutes)s min (at the expected rate)") % {"minutes": minutes}
        return gettext("%(minutes)s min") % {"minutes": minutes}

    @admin.display(description=_("SLA"))
    def sla(self, obj: ImportJob) -> str:
        state = selectors.job_timing(job=obj, per_row=self._per_row).sla_state
        color = {"breached": "#ba2121", "at risk": "#c77700"}.get(state, "#417505")
        return format_html(
            '<span style="color:{}">{} ({})</span>',
            color,
            SLA_STATES.get(state, state),
            gettext("%(minutes)s min") % {"minutes": obj.sla_minutes},
        )

    def get_urls(self):
        return [
            path("start/", self.admin_site.admin_view(self.start_view), name="batchimport_importjob_start"),
            path("schedule/", self.admin_site.admin_view(self.schedule_view), name="batchimport_importjob_schedule"),
            *super().get_urls(),
        ]

    def start_view(self, request):
        """The "Start an import" form -> services.import_job_submit (an upload is stored first)."""
        if not request.user.has_perm("batchimport.start_import"):
            self.message_user(request, gettext("You need the 'Can start imports' permission."), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:batchimport_importjob_changelist"))
        form = StartImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            d = form.cleaned_data
            try:
                target = services.upload_store(upload=d["upload"], market=d["market"]) if d["upload"] else d["folder"]
                job = services.import_job_submit(
                    path=target,
                    market=d["market"] or None,
                    batch_size=d["batch_size"],
                    overwrite=d["overwrite"],
                    max_concurrency=d["workers"],
                    requested_by=request.user.get_username(),
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(
                    request,
                    gettext("Import job %(job)s queued (%(files)s files).") % {"job": job.pk, "files": job.files_total},
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:batchimport_importjob_change", args=[job.pk]))
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "title": gettext("Start an import"),
            "opts": self.model._meta,
            "data_root": data_root(),
            "market_settings": MarketImportSettings.objects.all(),
        }
        return render(request, "admin/batchimport/importjob/start.html", context)

    def schedule_view(self, request):
        """A recurring import -> services.import_schedule_create, as the API's schedules/all-markets."""
        if not request.user.has_perm("batchimport.schedule_import"):
            self.message_user(request, gettext("You need the 'Can schedule imports' permission."), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:batchimport_importjob_changelist"))
        form = ImportScheduleForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            d = form.cleaned_data
            try:
                schedule = services.import_schedule_create(
                    name=d["name"], path=d["folder"], cron=d["cron"], tz=d["timezone"], options=form.import_options()
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(
                    request,
                    gettext("Import schedule %(name)s saved: next run %(next)s.")
                    % {"name": schedule.name, "next": schedule.next_run},
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:django_q_schedule_change", args=[schedule.pk]))
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "title": gettext("Schedule an import"),
            "intro": gettext(
                "The import runs at the cron times in the schedule's time zone, never while its previous run is "
                "still going. Fields left empty take the market's import settings when it runs."
            ),
            "submit_label": gettext("Save schedule"),
            "changelist": reverse("admin:batchimport_importjob_changelist"),
            "opts": self.model._meta,
        }
        return render(request, "admin/etl/form_page.html", context)

    @admin.action(description=_("Cancel selected imports"), permissions=["cancel"])
    def cancel_jobs(self, request, queryset):
        """services.import_job_cancel on each selected job."""
        admin_each(
            self,
            request,
            queryset,
            lambda job: services.import_job_cancel(job=job),
            gettext("cancelled."),
            refused_level=messages.WARNING,
        )

    @admin.action(description=_("Retry failed files of selected imports"), permissions=["retry"])
    def retry_jobs(self, request, queryset):
        """services.import_job_retry on each selected job (queued on commit)."""
        admin_each(
            self,
            request,
            queryset,
            lambda job: services.import_job_retry(job=job, workers=job.max_concurrency),
            gettext("queued again."),
            refused_level=messages.WARNING,
        )

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm("batchimport.cancel_import")

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("batchimport.retry_import")


@admin.register(ImportFile)
class ImportFileAdmin(RecordAdmin):
    list_display = [
        "relpath",
        "job",
        "market",
        "status",
        "layout",
        "timeframe",
        "rows_read",
        "rows_inserted",
        "rows_duplicates",
        "rows_updated",
        "rows_rejected",
        "attempts",
        "finished_at",
    ]
    list_filter = ["status", "market", "layout"]
    search_fields = ["relpath", "ticker", "sha256"]
    readonly_fields = [f.name for f in ImportFile._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class ReasonFilter(admin.SimpleListFilter):
    title = _("reason")
    parameter_name = "reason_kind"
    KINDS = {
        "unparseable": "unparseable ",
        "high_low": "high ",
        "open_outside": "open ",
        "close_outside": "close ",
        "negative": "negative ",
        "duplicate": "duplicate",
        "fields": "expected ",
    }

    LABELS = {
        "unparseable": _("unparseable"),
        "high_low": _("high below low"),
        "open_outside": _("open outside high-low"),
        "close_outside": _("close outside high-low"),
        "negative": _("negative volume"),
        "duplicate": _("duplicate"),
        "fields": _("wrong number of fields"),
    }

    def lookups(self, request, model_admin):
        return [(k, self.LABELS[k]) for k in self.KINDS]

    def queryset(self, request, queryset):
        prefix = self.KINDS.get(self.value() or "")
        return queryset.filter(reason__startswith=prefix) if prefix else queryset


@admin.register(RejectedRow)
class RejectedRowAdmin(RecordAdmin):
    list_display = ["file", "line", "reason", "field", "raw_text", "job"]
    list_filter = [ReasonFilter, "file__market", "job"]
    search_fields = ["reason", "raw", "file__relpath"]
    list_select_related = ["file"]
    readonly_fields = ["file", "job", "line", "raw", "reason", "field", "created_at"]
    actions = ["download_csv"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description=_("raw"))
    def raw_text(self, obj: RejectedRow) -> str:
        return obj.raw[:80]

    @admin.action(description=_("Download selected rows as CSV"))
    def download_csv(self, request, queryset):
        return _csv_response(queryset.select_related("file").order_by("file_id", "line"))

    def get_urls(self):
        return [
            path("download/", self.admin_site.admin_view(self.download_view), name="batchimport_rejectedrow_download"),
            *super().get_urls(),
        ]

    def download_view(self, request):
        """All rows matching the change list's filters, as CSV."""
        changelist = self.get_changelist_instance(request)
        return _csv_response(changelist.get_queryset(request).select_related("file").order_by("file_id", "line"))


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_response(queryset) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def rows():
        yield writer.writerow(["file", "line", "reason", "field", "raw", "job"])
        for r in queryset.iterator(chunk_size=2000):
            yield writer.writerow([r.file.relpath, r.line, r.reason, r.field, r.raw, r.job_id])

    response = StreamingHttpResponse(rows(), content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="rejected_rows.csv"'
    return response


@admin.register(ImportDeadLetter)
class ImportDeadLetterAdmin(RecordAdmin):
    list_display = ["id", "ref", "attempts", "short_error", "created_at", "resubmitted_at", "resolved_at"]
    list_filter = [("resubmitted_at", admin.EmptyFieldListFilter), ("resolved_at", admin.EmptyFieldListFilter)]
    search_fields = ["ref", "error"]
    readonly_fields = ["kind", "ref", "payload", "error", "attempts", "created_at", "resubmitted_at", "resolved_at"]
    actions = ["resubmit"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description=_("error"))
    def short_error(self, obj) -> str:
        return obj.error[:100]

    @admin.action(description=_("Resubmit selected files"), permissions=["retry"])
    def resubmit(self, request, queryset):
        """services.dead_letter_resubmit on each selected letter (queued on commit)."""
        admin_each(
            self,
            request,
            queryset,
            lambda letter: services.dead_letter_resubmit(dead_letter=letter),
            gettext("{obj.ref} queued again in job {r.pk}."),
            refused_level=messages.WARNING,
        )

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("batchimport.retry_import")


@admin.register(MarketImportSettings)
class MarketImportSettingsAdmin(admin.ModelAdmin):
    """Each market's import settings: what a job uses when its request leaves a value out
    (batchimport.services.market_settings). Bootstrap creates the rows with the old system's figures."""

    list_display = ["market", "batch_size", "max_concurrency", "sla_minutes", "expected_rows_per_second", "priority"]
    list_editable = ["batch_size", "max_concurrency", "sla_minutes", "expected_rows_per_second", "priority"]
    readonly_fields = ["updated_at"]
