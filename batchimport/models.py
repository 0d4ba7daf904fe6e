"""Import jobs, the files they read, and the rows they refused."""

from __future__ import annotations

from datetime import timedelta

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from batchimport.markets import MARKET_KEYS, MAX_CONCURRENCY_LIMIT
from etl.models import DeadLetter, RunRecord


class ImportStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DEAD_LETTERED = "dead_lettered"
    SKIPPED = "skipped"  # files only: unchanged since a successful import


TERMINAL = (
    ImportStatus.SUCCEEDED,
    ImportStatus.FAILED,
    ImportStatus.CANCELLED,
    ImportStatus.DEAD_LETTERED,
    ImportStatus.SKIPPED,
)


# The markets' keys as model choices (the table is batchimport.markets.MARKETS).
MarketKey = models.TextChoices("MarketKey", [(key, key) for key in MARKET_KEYS])


class RowCounts(models.Model):
    """Counts that add up: read = inserted + duplicates + updated + rejected.
    `changed` is the part of `duplicates` whose values differed from what was
    stored and were kept as stored (the job did not ask to overwrite)."""

    rows_read = models.BigIntegerField(default=0)
    rows_inserted = models.BigIntegerField(default=0)
    rows_duplicates = models.BigIntegerField(default=0)
    rows_updated = models.BigIntegerField(default=0)
    rows_rejected = models.BigIntegerField(default=0)
    rows_changed = models.BigIntegerField(default=0)

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

    class Kind(models.TextChoices):
        MARKET = "market"
        ALL_MARKETS = "all_markets"

    status = models.CharField(max_length=16, choices=ImportStatus.choices, default=ImportStatus.QUEUED, db_index=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.MARKET)
    market = models.CharField(max_length=16, choices=MarketKey.choices, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    path = models.CharField(
        max_length=500, help_text="Folder or file, relative to DATA_ROOT ('.' for DATA_ROOT itself)"
    )
    batch_size = models.PositiveIntegerField(default=50_000)
    max_concurrency = models.PositiveSmallIntegerField(default=2)
    overwrite = models.BooleanField(default=False, help_text="Overwrite stored candles whose values differ")
    run_in_parallel = models.BooleanField(default=True, help_text="All-markets: run the markets side by side")
    max_attempts = models.PositiveSmallIntegerField(default=4)
    sla_minutes = models.PositiveIntegerField(default=45)
    expected_rows_per_second = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="The market's expected rate when the job was created (its ETA before it has one)",
    )
    priority = models.PositiveSmallIntegerField(default=0, help_text="Order among the markets of an all-markets job")
    sla_breached = models.BooleanField(default=False)
    attempt = models.PositiveSmallIntegerField(default=1, help_text="Job-level retries by an operator")
    files_total = models.PositiveIntegerField(default=0)
    files_done = models.PositiveIntegerField(default=0)
    files_skipped = models.PositiveIntegerField(default=0)
    files_failed = models.PositiveIntegerField(default=0)
    schedule_name = models.CharField(max_length=100, blank=True)

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
        return f"import #{self.pk} {self.market or 'all markets'} ({self.status})"

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

    market = models.CharField(max_length=16, choices=MarketKey.choices, unique=True)
    batch_size = models.PositiveIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(1_000_000)],
        help_text=_("Rows per staging batch (a COPY, a progress update and a cancel point)"),
    )
    max_concurrency = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(MAX_CONCURRENCY_LIMIT)],
        help_text=_("Worker tasks sharing a queued job's files (never more at once)"),
    )
    sla_minutes = models.PositiveIntegerField(
        validators=[MinValueValidator(1)], help_text=_("A job of this market should finish within this many minutes")
    )
    expected_rows_per_second = models.PositiveIntegerField(
        validators=[MinValueValidator(1)],
        help_text=_("The rate imports of this market should reach: a job's ETA before it has measured its own"),
    )
    priority = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1)],
        help_text=_("1 first: the order of the markets, and of their files, in an all-markets job"),
    )
    updated_at = models.DateTimeField(auto_now=True, db_default=Now())

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

    status = models.CharField(max_length=16, choices=ImportStatus.choices, default=ImportStatus.QUEUED, db_index=True)
    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="files")
    # Relative, so that a worker on any host finds the file below its own DATA_ROOT (the share's mount point).
    relpath = models.CharField(max_length=500, help_text="Relative to DATA_ROOT")
    market = models.CharField(max_length=16, choices=MarketKey.choices)
    ticker = models.CharField(max_length=32, blank=True)
    layout = models.CharField(max_length=20, blank=True)
    timeframe = models.CharField(max_length=8, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=100, blank=True)
    priority = models.PositiveSmallIntegerField(default=0)

    class Meta:
        verbose_name = _("import file")
        verbose_name_plural = _("import files")
        db_table = "import_files"
        ordering = ["job", "priority", "id"]
        constraints = [models.UniqueConstraint(fields=["job", "relpath"], name="uniq_import_file_job_relpath")]
        indexes = [
            models.Index(fields=["job", "status"]),
            models.Index(fields=["relpath", "size", "sha256"], name="import_file_fingerprint"),
        ]

    def __str__(self) -> str:
        return self.relpath


class RejectedRow(models.Model):
    """A row that was not imported, with what a person needs to fix it."""

    file = models.ForeignKey(ImportFile, on_delete=models.CASCADE, related_name="rejected_rows")
    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="rejected_rows")
    line = models.PositiveIntegerField()
    raw = models.TextField()
    reason = models.CharField(max_length=300)
    field = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_default=Now())

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
