"""Core data: reference data, symbols, raw candles, audit trail, dead letters.

Table names are the ones operators know (`asset_classes`, `market_data`, ...).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import ClassVar
from zoneinfo import ZoneInfo, available_timezones

from django.conf import settings
from django.contrib.postgres.indexes import BrinIndex
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.dates import WEEKDAYS, WEEKDAYS_ABBR
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from etl import calendars


def validate_timezone(value: str) -> None:
    if value not in available_timezones():
        raise ValidationError(_("%(value)s is not an IANA time zone"), params={"value": repr(value)})


def validate_calendar_code(value: str) -> None:
    if not calendars.known_code(value):
        raise ValidationError(_("%(value)s is not an exchange-calendars code"), params={"value": repr(value)})


class TimestampedModel(models.Model):
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_default=Now())
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, db_default=Now())

    class Meta:
        abstract = True


class AssetClass(TimestampedModel):
    code = models.CharField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=100)
    description = models.TextField(_("description"), blank=True)
    is_active = models.BooleanField(_("is active"), default=True)

    class Meta:
        verbose_name = _("asset class")
        db_table = "asset_classes"
        ordering = ["code"]
        verbose_name_plural = _("asset classes")
        permissions = [("bootstrap_reference_data", "Can bootstrap reference data")]

    def __str__(self) -> str:
        return self.code


class Market(TimestampedModel):
    code = models.CharField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=100)
    mic = models.CharField(_("MIC"), max_length=4, blank=True, help_text=_("ISO 10383 market identifier code"))
    timezone = models.CharField(
        _("timezone"), max_length=64, validators=[validate_timezone], help_text=_("IANA time zone")
    )
    currency = models.CharField(_("currency"), max_length=8)
    country = models.CharField(_("country"), max_length=2, blank=True, help_text=_("ISO 3166-1 alpha-2"))
    default_asset_class = models.ForeignKey(
        AssetClass, null=True, blank=True, on_delete=models.PROTECT, verbose_name=_("default asset class")
    )
    is_active = models.BooleanField(_("is active"), default=True)
    calendar_code = models.CharField(
        _("calendar code"),
        max_length=16,
        blank=True,
        validators=[validate_calendar_code],
        help_text=_(
            "exchange-calendars code (XNYS, XNAS, XIST): real trading days, holidays and early closes; "
            '"24/7" for always open; blank: the weekly trading sessions below (FX)'
        ),
    )

    class Meta:
        verbose_name = _("market")
        verbose_name_plural = _("markets")
        db_table = "markets"
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Weekday(models.IntegerChoices):
    # Django's own day names, with its translations.
    MONDAY = 0, WEEKDAYS[0]
    TUESDAY = 1, WEEKDAYS[1]
    WEDNESDAY = 2, WEEKDAYS[2]
    THURSDAY = 3, WEEKDAYS[3]
    FRIDAY = 4, WEEKDAYS[4]
    SATURDAY = 5, WEEKDAYS[5]
    SUNDAY = 6, WEEKDAYS[6]


class TradingSession(TimestampedModel):
    """One weekly open interval in the market's local time.

    The interval runs from (start_weekday, start_time) to (end_weekday,
    end_time) and may cross midnight or the weekend (FX: Sunday 17:00 to
    Friday 17:00). Equal start and end means open the whole week (24x7).
    """

    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="sessions", verbose_name=_("market"))
    name = models.CharField(_("name"), max_length=50, default="regular")
    start_weekday = models.PositiveSmallIntegerField(_("start weekday"), choices=Weekday.choices)
    start_time = models.TimeField(_("start time"))
    end_weekday = models.PositiveSmallIntegerField(_("end weekday"), choices=Weekday.choices)
    end_time = models.TimeField(_("end time"))
    is_active = models.BooleanField(_("is active"), default=True)

    class Meta:
        verbose_name = _("trading session")
        verbose_name_plural = _("trading sessions")
        db_table = "trading_sessions"
        ordering = ["market__code", "start_weekday", "start_time"]
        constraints = [
            models.UniqueConstraint(fields=["market", "name", "start_weekday"], name="uniq_session_market_name_day"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.market_id}:{self.name} {WEEKDAYS_ABBR[self.start_weekday]} {self.start_time:%H:%M}"
            f"-{WEEKDAYS_ABBR[self.end_weekday]} {self.end_time:%H:%M}"
        )

    def _minute_of_week(self, weekday: int, t: time) -> int:
        return weekday * 1440 + t.hour * 60 + t.minute

    def contains(self, moment: datetime) -> bool:
        """Is the market open at `moment` (aware) in this session?"""
        local = moment.astimezone(ZoneInfo(self.market.timezone))
        now = self._minute_of_week(local.weekday(), local.time())
        start = self._minute_of_week(self.start_weekday, self.start_time)
        end = self._minute_of_week(self.end_weekday, self.end_time)
        if start == end:
            return True
        if start < end:
            return start <= now < end
        return now >= start or now < end

    @property
    def length(self) -> timedelta:
        start = self._minute_of_week(self.start_weekday, self.start_time)
        end = self._minute_of_week(self.end_weekday, self.end_time)
        return timedelta(minutes=(end - start) % (7 * 1440) or 7 * 1440)


class DataProvider(TimestampedModel):
    code = models.CharField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=100)
    base_url = models.URLField(_("base URL"), help_text=_("Editable, so tests and proxies can point elsewhere."))
    rate_limit_per_minute = models.PositiveIntegerField(_("rate limit per minute"), default=60)
    priority = models.PositiveSmallIntegerField(_("priority"), default=100, help_text=_("Lower is tried first."))
    timeout_seconds = models.FloatField(_("timeout seconds"), default=10.0)
    requires_api_key = models.BooleanField(_("requires API key"), default=False)
    is_enabled = models.BooleanField(_("is enabled"), default=True)
    notes = models.TextField(_("notes"), blank=True)

    class Meta:
        verbose_name = _("data provider")
        verbose_name_plural = _("data providers")
        db_table = "data_providers"
        ordering = ["priority", "code"]

    def __str__(self) -> str:
        return self.code

    @property
    def api_key(self) -> str:
        """From the environment only; never stored, never shown."""
        return settings.PROVIDER_API_KEYS.get(self.code, "")

    @property
    def has_api_key(self) -> bool:
        return bool(self.api_key)


class SymbolSource(models.TextChoices):
    BOOTSTRAP = "bootstrap", _("Bootstrap")
    DISCOVERED = "discovered", _("Discovered")
    MANUAL = "manual", _("Manual")


class Symbol(TimestampedModel):
    ticker = models.CharField(_("ticker"), max_length=32)
    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="symbols", verbose_name=_("market"))
    asset_class = models.ForeignKey(
        AssetClass, null=True, blank=True, on_delete=models.PROTECT, verbose_name=_("asset class")
    )
    base_currency = models.CharField(_("base currency"), max_length=16, blank=True)
    quote_currency = models.CharField(_("quote currency"), max_length=16, blank=True)
    name = models.CharField(_("name"), max_length=200, blank=True)
    sector = models.CharField(_("sector"), max_length=100, blank=True)
    industry = models.CharField(_("industry"), max_length=150, blank=True)
    country = models.CharField(_("country"), max_length=2, blank=True)
    market_cap = models.DecimalField(_("market cap"), max_digits=24, decimal_places=2, null=True, blank=True)
    description = models.TextField(_("description"), blank=True)
    website = models.URLField(_("website"), blank=True)
    category = models.CharField(_("category"), max_length=100, blank=True)
    is_active = models.BooleanField(_("is active"), default=True)
    data_quality_score = models.PositiveSmallIntegerField(_("data quality score"), null=True, blank=True)
    source = models.CharField(_("source"), max_length=16, choices=SymbolSource.choices, default=SymbolSource.MANUAL)
    inference_confidence = models.FloatField(
        _("inference confidence"),
        null=True,
        blank=True,
        help_text=_("0-1: how sure the sync was of the inferred fields"),
    )
    enriched_at = models.DateTimeField(_("enriched at"), null=True, blank=True)
    enrichment_attempted_at = models.DateTimeField(_("enrichment attempted at"), null=True, blank=True)

    class Meta:
        verbose_name = _("symbol")
        verbose_name_plural = _("symbols")
        db_table = "symbols"
        ordering = ["market__code", "ticker"]
        constraints = [
            models.UniqueConstraint(fields=["ticker", "market"], name="uniq_symbol_ticker_market"),
            models.CheckConstraint(
                condition=models.Q(data_quality_score__isnull=True) | models.Q(data_quality_score__lte=100),
                name="symbol_quality_0_100",
            ),
        ]
        indexes = [models.Index(fields=["asset_class"]), models.Index(fields=["enriched_at"])]

    def __str__(self) -> str:
        return f"{self.ticker}@{self.market_id}"


class SymbolMapping(TimestampedModel):
    """How a provider spells a symbol (BTC -> BTCUSDT on Binance, BTC-USD on Yahoo)."""

    class Origin(models.TextChoices):
        INFERRED = "inferred", _("Inferred")
        MANUAL = "manual", _("Manual")

    symbol = models.ForeignKey(Symbol, on_delete=models.CASCADE, related_name="mappings", verbose_name=_("symbol"))
    provider = models.ForeignKey(
        DataProvider, on_delete=models.CASCADE, related_name="mappings", verbose_name=_("provider")
    )
    provider_symbol = models.CharField(_("provider symbol"), max_length=64)
    origin = models.CharField(_("origin"), max_length=16, choices=Origin.choices, default=Origin.INFERRED)
    validated_at = models.DateTimeField(_("validated at"), null=True, blank=True)
    is_valid = models.BooleanField(
        _("is valid"), null=True, blank=True, help_text=_("Result of the last check against the provider")
    )

    class Meta:
        verbose_name = _("symbol mapping")
        verbose_name_plural = _("symbol mappings")
        db_table = "symbol_mappings"
        ordering = ["symbol", "provider"]
        constraints = [
            models.UniqueConstraint(fields=["symbol", "provider"], name="uniq_mapping_symbol_provider"),
        ]
        indexes = [models.Index(fields=["provider", "provider_symbol"])]

    def __str__(self) -> str:
        return f"{self.symbol} -> {self.provider_id}:{self.provider_symbol}"


class IntegerForeignKey(models.ForeignKey):
    """A foreign key stored as int4 although the target's id is int8: the candle tables keep one
    per row, and 4 bytes (with the row's alignment, 8) matter at hundreds of millions of rows.
    PostgreSQL compares int4 with int8 in indexes and foreign keys directly."""

    def db_type(self, connection):
        return "integer"

    def rel_db_type(self, connection):
        return "integer"


class MarketData(models.Model):
    """Raw candles as imported. `market` and `asset_class` are the codes the
    file said; `asset_class` may be wrong or null (corrections repair it) and
    `symbol` is null until symbol sync links it.

    In PostgreSQL the table is range-partitioned by `ts`, one partition a year
    (docs/storage.md; the DDL is in migration 0013_market_data_partitioned, the partitions in
    etl.services.partitions). Django sees one table: `id` is its primary key here, while the
    database's primary key is the natural key (a partitioned table's keys must include `ts`);
    ids stay unique because only the sequence gives them. The file a candle came from is
    `import_file_id` (the file's path is kept once, on the import-file row)."""

    ticker = models.CharField(_("ticker"), max_length=32)
    market = models.CharField(_("market"), max_length=32)
    timeframe = models.CharField(_("timeframe"), max_length=8)
    ts = models.DateTimeField(_("bar time"), help_text=_("Bar open time, UTC"))
    # numeric, not float8: the file's exact decimals (a typical price takes 5-9 bytes, less than float8).
    open = models.DecimalField(pgettext_lazy("price", "open"), max_digits=28, decimal_places=10)
    high = models.DecimalField(pgettext_lazy("price", "high"), max_digits=28, decimal_places=10)
    low = models.DecimalField(pgettext_lazy("price", "low"), max_digits=28, decimal_places=10)
    close = models.DecimalField(pgettext_lazy("price", "close"), max_digits=28, decimal_places=10)
    volume = models.DecimalField(_("volume"), max_digits=30, decimal_places=8)
    adj_close = models.DecimalField(_("adjusted close"), max_digits=28, decimal_places=10, null=True, blank=True)
    asset_class = models.CharField(_("asset class"), max_length=32, null=True, blank=True)
    symbol = IntegerForeignKey(
        Symbol, null=True, blank=True, on_delete=models.SET_NULL, db_index=False, verbose_name=_("symbol")
    )
    extra = models.JSONField(_("extra"), null=True, blank=True, help_text=_("Source columns kept beside OHLCV"))
    # Not a foreign key: etl knows no import app, and a constraint would make every pruned
    # import file scan all candles. NULL: not from a file (the live poller). Import files that
    # delivered candles are kept by the import retention (docs/storage.md).
    import_file_id = models.IntegerField(
        _("import file"), null=True, blank=True, help_text=_("import_files.id of the file it came from")
    )
    # One timestamp: when the row was last written (the feature step's watermark, the
    # correction backup's "touched since"); when it was first stored is on its import file.
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, db_default=Now())

    class Meta:
        verbose_name = _("market data")
        db_table = "market_data"
        verbose_name_plural = _("market data")
        # Each index and the query that needs it (docs/storage.md has the EXPLAINs):
        constraints = [
            # The database's primary key: ON CONFLICT of the import and the live poller, the
            # loader's overlap and changed-row reads, the admin's and the API's ordering. Market
            # first: the order an import meets its files in (a folder per market), so a bulk
            # import appends at the index's right end (migration 0018, docs/storage.md).
            models.UniqueConstraint(fields=["market", "ticker", "timeframe", "ts"], name="uniq_market_data_bar"),
        ]
        indexes = [
            # A series' candles: the local candle source (fetch, latest_change), backfill spans,
            # the sync's duplicate merge and orphan check. Without `ts` the key repeats for a
            # whole series, so B-tree deduplication stores it in ~7 bytes a candle.
            models.Index(fields=["symbol", "timeframe"], name="market_data_symbol_tf"),
            # Candles waiting for symbol sync (the sync's pairs and its link UPDATE): small.
            models.Index(
                fields=["market", "ticker"], name="market_data_unlinked", condition=models.Q(symbol__isnull=True)
            ),
            # `id` lookups (admin change page, correction batches by id range, backup joins):
            # ids grow with the insert order, so a BRIN index of a few kB per partition finds
            # them; a B-tree would cost ~22 bytes a candle.
            BrinIndex(fields=["id"], name="market_data_id_brin", pages_per_range=32, autosummarize=True),
            # What changed since a reader's high-water mark (`ScanMark`: the feature step's scan
            # reads only the candles written since its last run). Rows are appended in
            # updated_at order, so each 32-page range spans a short time; a B-tree would cost
            # ~20 bytes a candle.
            BrinIndex(fields=["updated_at"], name="market_data_updated_brin", pages_per_range=32, autosummarize=True),
        ]

    def __str__(self) -> str:
        return f"{self.ticker}@{self.market} {self.timeframe} {self.ts:%Y-%m-%d %H:%M}"


class ScanMark(models.Model):
    """A reader's high-water mark over a big table: every row written before `mark` (by
    `updated_at`, the writer's transaction start) has been handled for the scope `name`
    names, so the next scan reads only rows written after it (the feature step's scan of
    `market_data`, docs/features.md). Only ever moves forward."""

    name = models.CharField(_("name"), max_length=120, primary_key=True)
    mark = models.DateTimeField(_("mark"))
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, db_default=Now())

    class Meta:
        verbose_name = _("scan mark")
        verbose_name_plural = _("scan marks")
        db_table = "scan_marks"

    def __str__(self) -> str:
        return f"{self.name}: {self.mark:%Y-%m-%d %H:%M:%S}"


class DataCorrection(models.Model):
    """Audit trail: one entry per group of changes to data (corrections,
    rollbacks, symbol clean-ups, candle amendments)."""

    kind = models.CharField(_("kind"), max_length=40, db_index=True)
    run_ref = models.CharField(_("run ref"), max_length=64, blank=True, help_text=_("e.g. correction:12"))
    table_name = models.CharField(_("table name"), max_length=64)
    ticker = models.CharField(_("ticker"), max_length=32, blank=True)
    market = models.CharField(_("market"), max_length=32, blank=True)
    field = models.CharField(_("field"), max_length=64, blank=True)
    old_value = models.TextField(_("old value"), null=True, blank=True)
    new_value = models.TextField(_("new value"), null=True, blank=True)
    row_count = models.BigIntegerField(_("row count"), default=1)
    detail = models.JSONField(_("detail"), null=True, blank=True)
    created_by = models.CharField(_("created by"), max_length=150, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_default=Now(), db_index=True)

    class Meta:
        verbose_name = _("data correction")
        verbose_name_plural = _("data corrections")
        db_table = "data_corrections"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["run_ref"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.ticker}@{self.market} {self.old_value}->{self.new_value} x{self.row_count}"


class DeadLetter(models.Model):
    """Work that failed for good, kept with what is needed to resubmit it."""

    kind = models.CharField(_("kind"), max_length=40, db_index=True, help_text=_("e.g. import_file, enrichment"))
    ref = models.CharField(_("ref"), max_length=200, help_text=_("What failed: a file path, a symbol"))
    payload = models.JSONField(_("payload"), default=dict)
    error = models.TextField(_("error"))
    attempts = models.PositiveIntegerField(_("attempts"), default=1)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_default=Now())
    resubmitted_at = models.DateTimeField(_("resubmitted at"), null=True, blank=True)
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)

    class Meta:
        verbose_name = _("dead letter")
        verbose_name_plural = _("dead letters")
        db_table = "dead_letters"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["kind", "resolved_at"])]

    def __str__(self) -> str:
        return f"{self.kind}: {self.ref}"


class RunStatus(models.TextChoices):
    QUEUED = "queued", pgettext_lazy("run status", "Queued")
    RUNNING = "running", pgettext_lazy("run status", "Running")
    SUCCEEDED = "succeeded", pgettext_lazy("run status", "Succeeded")
    FAILED = "failed", pgettext_lazy("run status", "Failed")
    CANCELLED = "cancelled", pgettext_lazy("run status", "Cancelled")
    SKIPPED = "skipped", pgettext_lazy("run status", "Skipped")


# A status as a word inside a sentence ("import job 5 is already running"), in lower case;
# the choices' labels above are for columns and filters.
STATUS_WORDS = {
    "queued": pgettext_lazy("status word", "queued"),
    "running": pgettext_lazy("status word", "running"),
    "succeeded": pgettext_lazy("status word", "succeeded"),
    "failed": pgettext_lazy("status word", "failed"),
    "cancelled": pgettext_lazy("status word", "cancelled"),
    "skipped": pgettext_lazy("status word", "skipped"),
    "dead_lettered": pgettext_lazy("status word", "dead-lettered"),
}


def status_word(status: str) -> str:
    """A run's or a file's status, for a sentence, in the operator's language."""
    return str(STATUS_WORDS.get(status, status))


class RunRecord(models.Model):
    """What every long-running piece of work records: status, who, timings,
    progress (done/total, rate), cancellation and the error. Apps subclass it
    and report through `etl.progress.ProgressReporter`."""

    status = models.CharField(
        _("status"), max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True
    )
    requested_by = models.CharField(
        _("requested by"), max_length=150, blank=True, help_text=_("user name, 'schedule' or 'command'")
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_default=Now())
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    progress_done = models.BigIntegerField(_("progress done"), default=0)
    progress_total = models.BigIntegerField(_("progress total"), null=True, blank=True)
    rate_per_second = models.FloatField(_("rate per second"), null=True, blank=True)
    cancel_requested = models.BooleanField(_("cancel requested"), default=False)
    error = models.TextField(_("error"), blank=True)

    # The every-minute scheduled function that finds runs of this type whose process died
    # (and fails, or queues again, them): `etl.recovery`'s heartbeat sweep, unless the app
    # recovers its runs itself.
    dead_run_sweep: ClassVar[str] = "etl.recovery.runs_heartbeat_sweep"

    class Meta:
        abstract = True

    @property
    def percent(self) -> float | None:
        if not self.progress_total:
            return None
        return min(100.0, 100.0 * self.progress_done / self.progress_total)

    @property
    def eta_seconds(self) -> float | None:
        if not self.progress_total or not self.rate_per_second:
            return None
        return max(0.0, (self.progress_total - self.progress_done) / self.rate_per_second)

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at:
            return None

        return ((self.finished_at or timezone.now()) - self.started_at).total_seconds()


class PipelineTrigger(models.TextChoices):
    API = "api", _("API")
    ADMIN = "admin", _("Admin")
    COMMAND = "command", _("Command")
    SCHEDULE = "schedule", _("Schedule")
    TASK = "task", _("Task")


class PipelineRun(RunRecord):
    """One run of the orchestrator: the execution history operators read."""

    trigger = models.CharField(
        _("trigger"), max_length=16, choices=PipelineTrigger.choices, default=PipelineTrigger.COMMAND
    )
    steps_requested = models.JSONField(
        _("steps requested"), default=list, blank=True, help_text=_("Empty: every default step")
    )
    options = models.JSONField(_("options"), default=dict, blank=True)
    continue_on_failure = models.BooleanField(_("continue on failure"), default=False)
    max_seconds = models.PositiveIntegerField(
        _("max seconds"), null=True, blank=True, help_text=_("Maximum execution time")
    )
    summary = models.JSONField(_("summary"), default=dict, blank=True)

    class Meta:
        verbose_name = _("pipeline run")
        verbose_name_plural = _("pipeline runs")
        db_table = "pipeline_runs"
        ordering = ["-created_at", "-id"]
        permissions = [
            ("run_pipeline", "Can run the ETL pipeline"),
            ("schedule_pipeline", "Can schedule the ETL pipeline"),
            ("sync_symbols", "Can synchronise symbols"),
            ("clean_symbols", "Can validate and clean symbols"),
        ]

    def __str__(self) -> str:
        return gettext("pipeline #%(run)s %(status)s") % {"run": self.pk, "status": self.get_status_display()}


class PipelineStepRun(models.Model):
    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="step_runs", verbose_name=_("run"))
    name = models.CharField(_("name"), max_length=40)
    order = models.PositiveSmallIntegerField(_("order"))
    status = models.CharField(_("status"), max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    counts = models.JSONField(_("counts"), default=dict, blank=True)
    error = models.TextField(_("error"), blank=True)

    class Meta:
        verbose_name = _("pipeline step run")
        verbose_name_plural = _("pipeline step runs")
        db_table = "pipeline_step_runs"
        ordering = ["run", "order", "id"]
        constraints = [models.UniqueConstraint(fields=["run", "name"], name="uniq_step_run_name")]
        indexes = [models.Index(fields=["name", "-finished_at"], name="step_run_name_finished")]

    def __str__(self) -> str:
        return f"{self.name} {self.get_status_display()}"

    @property
    def duration_seconds(self) -> float | None:
        if not (self.started_at and self.finished_at):
            return None
        return (self.finished_at - self.started_at).total_seconds()


class IntegritySnapshot(models.Model):
    """The data-integrity indicators at one moment, overall (market '') and per
    market: what the dashboard draws as trends over time."""

    taken_at = models.DateTimeField(db_index=True)
    market = models.CharField(max_length=32, blank=True, help_text="blank: all markets")
    candles = models.BigIntegerField()
    candles_without_symbol = models.BigIntegerField()
    symbol_coverage = models.FloatField(null=True)
    asset_class_consistency = models.FloatField(null=True)
    enrichment_coverage = models.FloatField(null=True)
    overall_quality = models.FloatField(null=True)

    class Meta:
        db_table = "integrity_snapshots"
        ordering = ["-taken_at", "market"]
        indexes = [models.Index(fields=["market", "taken_at"])]

    def __str__(self) -> str:
        return f"{self.market or 'all'} @ {self.taken_at:%Y-%m-%d %H:%M}: quality {self.overall_quality}"


class IntegritySummary(models.Model):
    """One number the integrity pages show, kept current by the writers' statement triggers:
    `value` of `metric` for `market` (a market code; the raw market of candles without a
    symbol; a provider code for the fetch log), per `bucket` (an hour or a day) where the
    number is counted over time. Fractional figures are stored scaled to integers
    (`etl.summaries.SCALE`), so sums are exact in any order. Triggers append to
    `IntegritySummaryDelta`; `etl.summaries.summaries_fold` folds the deltas in."""

    market = models.CharField(_("market"), max_length=32, blank=True)
    metric = models.CharField(_("metric"), max_length=80)
    bucket = models.DateTimeField(
        _("bucket"), null=True, blank=True, help_text=_("start of the hour or day counted; blank: all time")
    )
    value = models.BigIntegerField(_("value"), default=0)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, db_default=Now())

    class Meta:
        verbose_name = _("integrity summary")
        verbose_name_plural = _("integrity summaries")
        db_table = "integrity_summary"
        ordering = ["metric", "market", "bucket"]
        constraints = [
            # One row per number; NULL buckets are one bucket (PostgreSQL 15's NULLS NOT DISTINCT).
            models.UniqueConstraint(
                fields=["market", "metric", "bucket"], name="uniq_integrity_summary", nulls_distinct=False
            )
        ]

    def __str__(self) -> str:
        return f"{self.market or 'all'} {self.metric}: {self.value}"


class IntegritySummaryDelta(models.Model):
    """A change to an `IntegritySummary` number, appended by a trigger in the writer's
    transaction. Insert-only, so concurrent writers never wait on a shared row."""

    market = models.CharField(max_length=32, blank=True)
    metric = models.CharField(max_length=80)
    bucket = models.DateTimeField(null=True, blank=True)
    value = models.BigIntegerField()

    class Meta:
        db_table = "integrity_summary_deltas"


class SymbolCandleTally(models.Model):
    """Candles of one symbol by their stored asset class (NULL, blank or a code): what a
    change of the symbol's class or market moves between the summary's categories,
    without recounting the symbol's candles."""

    symbol_id = models.BigIntegerField()
    asset_class = models.CharField(max_length=32, null=True, blank=True)
    candles = models.BigIntegerField(default=0)

    class Meta:
        db_table = "integrity_symbol_tallies"
        constraints = [
            models.UniqueConstraint(fields=["symbol_id", "asset_class"], name="uniq_symbol_tally", nulls_distinct=False)
        ]


class SymbolCandleTallyDelta(models.Model):
    """A change to a `SymbolCandleTally`, appended by the market_data triggers."""

    symbol_id = models.BigIntegerField(db_index=True)
    asset_class = models.CharField(max_length=32, null=True, blank=True)
    candles = models.BigIntegerField()

    class Meta:
        db_table = "integrity_symbol_tally_deltas"


class UnlinkedPairTally(models.Model):
    """Candles without a symbol per raw (market, ticker): `unsynced_pairs` counts the
    pairs that have any, and the validate step lists them."""

    market = models.CharField(max_length=32)
    ticker = models.CharField(max_length=32)
    candles = models.BigIntegerField(default=0)

    class Meta:
        db_table = "integrity_unlinked_pairs"
        constraints = [models.UniqueConstraint(fields=["market", "ticker"], name="uniq_unlinked_pair")]


class UnlinkedPairTallyDelta(models.Model):
    """A change to an `UnlinkedPairTally`, appended by the market_data triggers."""

    market = models.CharField(max_length=32)
    ticker = models.CharField(max_length=32)
    candles = models.BigIntegerField()

    class Meta:
        db_table = "integrity_unlinked_pair_deltas"


class SummaryRecount(RunRecord):
    """One full recount of the integrity summaries from the big tables: the drift it
    found (summary value against the recount) and whether it repaired it."""

    repair = models.BooleanField(
        _("repair"), default=True, help_text=_("write the recounted values over the drifted ones")
    )
    sources = models.JSONField(
        _("sources"), default=list, blank=True, help_text=_("summary sources recounted; empty: all")
    )
    drift_count = models.PositiveIntegerField(
        _("drift count"), default=0, help_text=_("summary values that differed from the recount")
    )
    drift = models.JSONField(
        _("drift"), default=list, blank=True, help_text=_("the first drifted values: where, kept, recounted")
    )
    repaired = models.BooleanField(_("repaired"), default=False)
    result = models.JSONField(
        _("result"), default=dict, blank=True, help_text=_("per source: values compared, drifted, seconds")
    )

    class Meta:
        verbose_name = _("summary recount")
        verbose_name_plural = _("summary recounts")
        db_table = "summary_recounts"
        ordering = ["-created_at", "-id"]
        permissions = [("recount_summaries", "Can recount the integrity summaries")]

    def __str__(self) -> str:
        return f"summary recount #{self.pk} {self.status}"


class ApiToken(models.Model):
    """A named API token a staff member issued, with an optional expiry. Only a
    SHA-256 of the key is stored: the key itself is shown once, when issued."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens", verbose_name=_("user")
    )
    name = models.CharField(
        _("name"), max_length=100, help_text=_("what the token is for, e.g. 'nightly import script'")
    )
    prefix = models.CharField(_("prefix"), max_length=8, help_text=_("the key's first characters, to recognise it"))
    key_hash = models.CharField(_("key hash"), max_length=64, unique=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    created_by = models.CharField(_("created by"), max_length=150, blank=True)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True, help_text=_("blank: never expires"))
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True)

    class Meta:
        verbose_name = _("api token")
        verbose_name_plural = _("api tokens")
        db_table = "api_tokens"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…, {self.user})"


class MetricTotal(models.Model):
    """One exported sample of a metric that any process may count (a run
    finished, a file failed, a provider call): the running total, which only
    pruning of this table could shrink, and nothing prunes it. Writers never
    touch it: they append to `MetricDelta`, and a scrape folds those in."""

    class Type(models.TextChoices):
        COUNTER = "counter"
        GAUGE = "gauge"
        HISTOGRAM = "histogram"

    family = models.CharField(max_length=120, help_text="the metric's name, without _total")
    sample = models.CharField(max_length=140, help_text="the exported sample name (_total, _bucket, _sum, ...)")
    type = models.CharField(max_length=10, choices=Type.choices)
    labels = models.JSONField(default=dict, blank=True)
    op = models.CharField(max_length=3, default="add", help_text="how deltas fold in: add, max or set")
    value = models.FloatField(default=0)
    updated_at = models.DateTimeField(auto_now=True, db_default=Now())

    class Meta:
        db_table = "metric_totals"
        ordering = ["family", "sample"]
        constraints = [models.UniqueConstraint(fields=["sample", "labels"], name="uniq_metric_total_sample")]

    def __str__(self) -> str:
        return f"{self.sample}{self.labels} = {self.value}"


class MetricDelta(models.Model):
    """An increment (`add`), a high-water mark (`max`) or a new value (`set`)
    not yet folded into `MetricTotal`. Append-only, so writers in concurrent
    transactions never wait on one another's counter row. The run tables' trigger
    also appends `obs`: one observation of a duration histogram, which the fold
    turns into its buckets, count and sum (`etl.events.FOLD_SQL`)."""

    class Op(models.TextChoices):
        ADD = "add"
        MAX = "max"
        SET = "set"
        OBS = "obs"  # one observation of a histogram: the fold makes its buckets, count and sum

    family = models.CharField(max_length=120)
    sample = models.CharField(max_length=140)
    type = models.CharField(max_length=10, choices=MetricTotal.Type.choices)
    labels = models.JSONField(default=dict, blank=True)
    op = models.CharField(max_length=3, choices=Op.choices, default=Op.ADD)
    value = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True, db_default=Now())

    class Meta:
        db_table = "metric_deltas"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.op} {self.sample}{self.labels} {self.value}"


class RunHeartbeat(models.Model):
    """The last sign of life of a running run's process, stamped by its
    `ProgressReporter` at most every few seconds. One row per run, apart from
    the run tables so that each app's run model needs no column of its own:
    a run still `running` whose beat is old lost its process (killed, or its
    connection died), even where no session lock can tell (behind a pooler)."""

    run_model = models.CharField(max_length=100, help_text="app_label.model_name of the run")
    run_id = models.BigIntegerField()
    beat_at = models.DateTimeField()

    class Meta:
        db_table = "run_heartbeats"
        constraints = [models.UniqueConstraint(fields=["run_model", "run_id"], name="uniq_run_heartbeat")]

    def __str__(self) -> str:
        return f"{self.run_model} {self.run_id} at {self.beat_at:%Y-%m-%d %H:%M:%S}"


class SigningProbe(models.Model):
    """A fixed text signed the way django-q2 signs a task, with the SECRET_KEY of
    the process that wrote it: `web` by the web, `worker:<host>` by a worker at
    start. A worker that cannot read the web's probe cannot read its tasks."""

    name = models.CharField(max_length=200, unique=True)
    signed = models.TextField()
    written_at = models.DateTimeField()

    class Meta:
        db_table = "signing_probes"

    def __str__(self) -> str:
        return self.name


class MarketClosure(TimestampedModel):
    """An operator's override of a market's calendar: an unscheduled closure (the whole
    local day) or an early close (from `close_at`, local time)."""

    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="closures", verbose_name=_("market"))
    day = models.DateField(_("day"), help_text=_("Local date"))
    close_at = models.TimeField(
        _("close at"), null=True, blank=True, help_text=_("Local time of an early close; blank: closed all day")
    )
    reason = models.CharField(_("reason"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("market closure")
        verbose_name_plural = _("market closures")
        db_table = "market_closures"
        ordering = ["market__code", "-day"]
        constraints = [models.UniqueConstraint(fields=["market", "day"], name="uniq_closure_market_day")]

    def __str__(self) -> str:
        if self.close_at:
            return gettext("%(market)s %(day)s closes %(time)s") % {
                "market": self.market_id,
                "day": self.day,
                "time": f"{self.close_at:%H:%M}",
            }
        return gettext("%(market)s %(day)s closed") % {"market": self.market_id, "day": self.day}
