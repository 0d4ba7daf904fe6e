"""Import jobs, the files they read, and the rows they refused."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from batchimport.markets import MARKET_KEYS, MAX_CONCURRENCY_LIMIT
from etl.models import DeadLetter, RunRecord


class ImportStatus(models.TextChoices):
    QUEUED = "queued", pgettext_lazy("run status", "Queued")
    RUNNING = "running", pgettext_lazy("run status", "Running")
    SUCCEEDED = "succeeded", pgettext_lazy("run status", "Succeeded")
    FAILED = "failed", pgettext_lazy("run status", "Failed")
    CANCELLED = "cancelled", pgettext_lazy("run status", "Cancelled")
    DEAD_LETTERED = "dead_lettered", pgettext_lazy("run status", "Dead-lettered")
    SKIPPED = "skipped", pgettext_lazy("run status", "Skipped")  # files only: unchanged since a successful import


TERMINAL = (
    ImportStatus.SUCCEEDED,
    ImportStatus.FAILED,
    ImportStatus.CANCELLED,
    ImportStatus.DEAD_LETTERED,
    ImportStatus.SKIPPED,
)


# The markets' keys as model choices (the table is batchimport.markets.MARKETS).
MarketKey = models.TextChoices("MarketKey", [(key, (key, key)) for key in MARKET_KEYS])  # labelled as spelt


class RowCounts(models.Model):
    """Counts that add up: read = inserted + duplicates + updated + rejected.
    `changed` is the part of `duplicates` whose values differed from what was
    stored and were kept as stored (the job did not ask to overwrite)."""

    rows_read = models.BigIntegerField(_("rows read"), default=0)
    rows_inserted = models.BigIntegerField(_("rows inserted"), default=0)
    rows_duplicates = models.BigIntegerField(_("rows duplicates"), default=0)
    rows_updated = models.BigIntegerField(_("rows updated"), default=0)
    rows_rejected = models.BigIntegerField(_("rows rejected"), default=0)
    rows_changed = models.BigIntegerField(_("rows changed"), default=0)

    class Meta:
        abstract = True

    COUNT_FIELDS = ("rows_read", "rows_inserted", "rows_duplicates", "rows_updated", "rows_rejected", "rows_changed")

    @property
    def counts_add_up(self) -> bool:
        return self.rows_read == self.rows_inserted + self.rows_duplicates + self.rows_updated + self.rows_rejected


class ImportJob(RunRecord, RowCounts):
    """An import of one market's folder, or the all-markets parent of four of them.

    Progress (`progress_done/total`) is in bytes of the job's files; the rate
    shown is rows per second."""

    # A job whose worker died goes on when its files are queued again (orphaned_files_requeue).
    dead_run_sweep: ClassVar[str] = "batchimport.tasks.orphaned_files_requeue"

    class Kind(models.TextChoices):
        MARKET = "market", _("One market")
        ALL_MARKETS = "all_markets", _("All markets")

    status = models.CharField(
        _("status"), max_length=16, choices=ImportStatus.choices, default=ImportStatus.QUEUED, db_index=True
    )
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.MARKET)
    market = models.CharField(_("market"), max_length=16, choices=MarketKey.choices, blank=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children", verbose_name=_("parent")
    )
    path = models.CharField(
        _("path"), max_length=500, help_text=_("Folder or file, relative to DATA_ROOT ('.' for DATA_ROOT itself)")
    )
    batch_size = models.PositiveIntegerField(_("batch size"), default=50_000)
    max_concurrency = models.PositiveSmallIntegerField(_("max concurrency"), default=2)
    overwrite = models.BooleanField(
        _("overwrite"), default=False, help_text=_("Overwrite stored candles whose values differ")
    )
    run_in_parallel = models.BooleanField(
        _("run in parallel"), default=True, help_text=_("All-markets: run the markets side by side")
    )
    max_attempts = models.PositiveSmallIntegerField(_("max attempts"), default=4)
    sla_minutes = models.PositiveIntegerField(_("SLA minutes"), default=45)
    expected_rows_per_second = models.PositiveIntegerField(
        _("expected rows/s"),
        null=True,
        blank=True,
        help_text=_("The market's expected rate when the job was created (its ETA before it has one)"),
    )
    priority = models.PositiveSmallIntegerField(
        _("priority"), default=0, help_text=_("Order among the markets of an all-markets job")
    )
    sla_breached = models.BooleanField(_("SLA breached"), default=False)
    attempt = models.PositiveSmallIntegerField(_("attempt"), default=1, help_text=_("Job-level retries by an operator"))
    files_total = models.PositiveIntegerField(_("files total"), default=0)
    files_done = models.PositiveIntegerField(_("files done"), default=0)
    files_skipped = models.PositiveIntegerField(_("files skipped"), default=0)
    files_failed = models.PositiveIntegerField(_("files failed"), default=0)
    schedule_name = models.CharField(_("schedule name"), max_length=100, blank=True)

    class Meta:
        verbose_name = _("import job")
        verbose_name_plural = _("import jobs")
        db_table = "import_jobs"
        ordering = ["-created_at", "-id"]
        permissions = [
            ("start_import", "Can start imports"),
            ("cancel_import", "Can cancel imports"),
            ("retry_import", "Can retry imports"),
            ("schedule_import", "Can schedule imports"),
        ]
        indexes = [models.Index(fields=["kind", "status"])]

    def __str__(self) -> str:
        return gettext("import #%(job)s %(market)s (%(status)s)") % {
            "job": self.pk,
            "market": self.market or gettext("all markets"),
            "status": self.get_status_display(),
        }

    @property
    def sla_deadline(self):
        return self.started_at + timedelta(minutes=self.sla_minutes) if self.started_at else None

    @property
    def sla_state(self) -> str:
        if self.sla_breached:
            return "breached"
        deadline = self.sla_deadline
        if deadline is None:
            return "not started"
        if self.status in TERMINAL:
            return "met"
        return "at risk" if timezone.now() > deadline - timedelta(minutes=self.sla_minutes) * 0.2 else "on track"

    @property
    def rows_per_second(self) -> float | None:
        duration = self.duration_seconds
        return round(self.rows_read / duration, 1) if duration else None

    @property
    def eta_seconds(self) -> float | None:
        # progress is in bytes: project the byte rate observed so far
        duration = self.duration_seconds
        if not self.progress_total or not duration or not self.progress_done:
            return None
        return max(0.0, (self.progress_total - self.progress_done) * duration / self.progress_done)


class MarketImportSettings(models.Model):
    """One market's import settings: what a job of the market uses when its request
    does not say otherwise (batchimport.services.market_settings). The
    reference-data bootstrap creates the rows with the old system's figures;
    operators edit them in the admin. A job keeps the values it started with."""

    market = models.CharField(_("market"), max_length=16, choices=MarketKey.choices, unique=True)
    batch_size = models.PositiveIntegerField(
        _("batch size"),
        validators=[MinValueValidator(1), MaxValueValidator(1_000_000)],
        help_text=_("Rows per staging batch (a COPY, a progress update and a cancel point)"),
    )
    max_concurrency = models.PositiveSmallIntegerField(
        _("max concurrency"),
        validators=[MinValueValidator(1), MaxValueValidator(MAX_CONCURRENCY_LIMIT)],
        help_text=_("Worker tasks sharing a queued job's files (never more at once)"),
    )
    sla_minutes = models.PositiveIntegerField(
        _("SLA minutes"),
        validators=[MinValueValidator(1)],
        help_text=_("A job of this market should finish within this many minutes"),
    )
    expected_rows_per_second = models.PositiveIntegerField(
        _("expected rows/s"),
        validators=[MinValueValidator(1)],
        help_text=_("The rate imports of this market should reach: a job's ETA before it has measured its own"),
    )
    priority = models.PositiveSmallIntegerField(
        _("priority"),
        validators=[MinValueValidator(1)],
        help_text=_("1 first: the order of the markets, and of their files, in an all-markets job"),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, db_default=Now())

    class Meta:
        verbose_name = _("market import settings")
        verbose_name_plural = _("market import settings")
        db_table = "import_market_settings"
        ordering = ["priority", "market"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(batch_size__gte=1, batch_size__lte=1_000_000), name="import_settings_batch_size"
            ),
            models.CheckConstraint(
                condition=models.Q(max_concurrency__gte=1, max_concurrency__lte=MAX_CONCURRENCY_LIMIT),
                name="import_settings_concurrency",
            ),
            models.CheckConstraint(
                condition=models.Q(sla_minutes__gte=1, expected_rows_per_second__gte=1, priority__gte=1),
                name="import_settings_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.market


class ImportFile(RunRecord, RowCounts):
    """One file of a job. Claimed by one worker at a time (`FOR UPDATE SKIP
    LOCKED` plus a session advisory lock while it is being read)."""

    # Queued again (not failed) within a minute when its reader's lock is free.
    dead_run_sweep: ClassVar[str] = "batchimport.tasks.orphaned_files_requeue"

    # Not indexed alone (nor with a LIKE index): see `import_file_unfinished` below.
    status = models.CharField(_("status"), max_length=16, choices=ImportStatus.choices, default=ImportStatus.QUEUED)
    # Its own index would repeat the leading column of (job, status) and of (job, relpath).
    job = models.ForeignKey(
        ImportJob, on_delete=models.CASCADE, related_name="files", verbose_name=_("job"), db_index=False
    )
    # Relative, so that a worker on any host finds the file below its own DATA_ROOT (the share's mount point).
    relpath = models.CharField(_("relative path"), max_length=500, help_text=_("Relative to DATA_ROOT"))
    market = models.CharField(_("market"), max_length=16, choices=MarketKey.choices)
    ticker = models.CharField(_("ticker"), max_length=32, blank=True)
    layout = models.CharField(_("layout"), max_length=20, blank=True)
    timeframe = models.CharField(_("timeframe"), max_length=8, blank=True)
    size = models.BigIntegerField(_("size"), null=True, blank=True)
    sha256 = models.CharField(_("SHA-256"), max_length=64, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    claimed_by = models.CharField(_("claimed by"), max_length=100, blank=True)
    priority = models.PositiveSmallIntegerField(_("priority"), default=0)

    class Meta:
        verbose_name = _("import file")
        verbose_name_plural = _("import files")
        db_table = "import_files"
        ordering = ["job", "priority", "id"]
        constraints = [models.UniqueConstraint(fields=["job", "relpath"], name="uniq_import_file_job_relpath")]
        # Each file's row is written three times (created, claimed, finished: non-HOT updates, every
        # index gets an entry each time), so it has only the indexes some query needs:
        # (job, status, priority, id): claiming (an ordered scan per job that stops at the group's
        # limit), job_finish's probe and tally, a job's files by status;
        # (job, relpath), the unique constraint: adding a job's files, its files by path;
        # the fingerprint: "unchanged since a successful import" and the earlier rejects' DELETE;
        # the unfinished ones (partial: a finished file leaves it): the queued and running counts of
        # the status page, the failed, dead-lettered and cancelled files of the admin's filter.
        indexes = [
            models.Index(fields=["job", "status", "priority", "id"], name="import_file_claim"),
            models.Index(fields=["relpath", "size", "sha256"], name="import_file_fingerprint"),
            models.Index(
                fields=["status"],
                name="import_file_unfinished",
                condition=~models.Q(status__in=["succeeded", "skipped"]),
            ),
        ]

    def __str__(self) -> str:
        return self.relpath


class RejectedRow(models.Model):
    """A row that was not imported, with what a person needs to fix it."""

    file = models.ForeignKey(ImportFile, on_delete=models.CASCADE, related_name="rejected_rows", verbose_name=_("file"))
    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="rejected_rows", verbose_name=_("job"))
    line = models.PositiveIntegerField(_("line"))
    raw = models.TextField(_("raw"))
    reason = models.CharField(_("reason"), max_length=300)
    field = models.CharField(_("field"), max_length=64, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_default=Now())

    class Meta:
        verbose_name = _("rejected row")
        verbose_name_plural = _("rejected rows")
        db_table = "rejected_rows"
        ordering = ["file", "line"]
        # One row per line of a file, however many attempts read it.
        constraints = [models.UniqueConstraint(fields=["file", "line"], name="uniq_rejected_row_file_line")]
        indexes = [models.Index(fields=["job"])]

    def __str__(self) -> str:
        return f"{self.file_id}:{self.line} {self.reason}"


class ImportDeadLetterManager(models.Manager):
    def get_queryset(self):
        return super().get_queryset().filter(kind="import_file")


class ImportDeadLetter(DeadLetter):
    """The import's slice of etl's dead-letter table, for its own admin page
    (with the resubmit action)."""

    objects = ImportDeadLetterManager()

    class Meta:
        proxy = True
        verbose_name = _("import dead letter")
        verbose_name_plural = _("import dead letters")
        ordering = ["-created_at"]
