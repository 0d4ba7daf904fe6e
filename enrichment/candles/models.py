"""Candle models: market_data_v2, feature runs, compute log, quality metrics, enrichment status, backfill state."""

from __future__ import annotations

from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.db.models.functions import Now
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from enrichment.candles.candle_quality import QualityFlag
from enrichment.candles.feature_list import FEATURE_COLUMNS
from etl.models import IntegerForeignKey, Market, RunRecord, Symbol

__all__ = [
    "CANDLE_COLUMNS",
    "FEATURE_COLUMNS",
    "QualityFlag",
    "MarketDataV2",
    "FeatureRun",
    "EnrichmentComputeLog",
    "DataQualityMetric",
    "EnrichmentStatus",
    "BackfillState",
    "LiveMarket",
    "LiveSeries",
]

# What a source delivers for one bar; a change in any of them is an amendment.
CANDLE_COLUMNS: tuple[str, ...] = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "taker_buy_volume",
    "quote_volume",
    "trades",
    "open_interest",
    "funding_rate",
    "liquidations",
    "long_short_account_ratio",
    "exchange_netflow",
)


def _float(verbose_name, **kw) -> models.FloatField:
    return models.FloatField(verbose_name, null=True, blank=True, **kw)


class NumericField(models.DecimalField):
    """PostgreSQL `numeric` without precision or scale: exact sums of any size (a `numeric(p, s)`
    would round every value written)."""

    def __init__(self, *args, **kwargs):
        kwargs.pop("max_digits", None)
        kwargs.pop("decimal_places", None)
        super().__init__(*args, **kwargs)

    def check(self, **kwargs):
        return models.Field.check(self, **kwargs)  # no digits to check

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs.pop("max_digits", None)
        kwargs.pop("decimal_places", None)
        return name, path, args, kwargs

    def db_type(self, connection) -> str:
        return "numeric"


class MarketDataV2(models.Model):
    """The enriched candle table. Rows are upserted by (symbol, timeframe, ts); a changed
    candle bumps `revision` (its amendment is in data_corrections) and clears
    `features_revision`, which is how the feature step knows where to start."""

    # No foreign key in the database: one check per written statement instead of one per row
    # (migration 0013 says how the guarantee is kept).
    symbol = IntegerForeignKey(
        Symbol,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,
        verbose_name=_("symbol"),
    )
    timeframe = models.CharField(_("timeframe"), max_length=8)
    ts = models.DateTimeField(_("bar time"), help_text=_("Bar open time, UTC"))
    # Candle (float64: this is the research table; raw decimals stay in market_data).
    open = models.FloatField(pgettext_lazy("price", "open"))
    high = models.FloatField(pgettext_lazy("price", "high"))
    low = models.FloatField(pgettext_lazy("price", "low"))
    close = models.FloatField(pgettext_lazy("price", "close"))
    volume = models.FloatField(_("volume"))
    taker_buy_volume = _float(_("taker buy volume"))
    quote_volume = _float(_("quote volume"))
    trades = models.BigIntegerField(_("trades"), null=True, blank=True)
    open_interest = _float(_("open interest"))
    funding_rate = _float(_("funding rate"))
    liquidations = _float(_("liquidations"))
    long_short_account_ratio = _float(_("long/short account ratio"))
    exchange_netflow = _float(_("exchange netflow"))
    # Features (see docs/features.md) and the recursive state incremental runs continue from.
    return_1h = _float(_("return 1h"))
    return_1d = _float(_("return 1d"))
    volatility_20 = _float(_("volatility 20"))
    volatility_50 = _float(_("volatility 50"))
    atr_14 = _float(_("ATR 14"))
    trend_direction = _float(_("trend direction"), help_text=_("+1 up, -1 down, 0 neutral"))
    market_structure = _float(_("market structure"), help_text=_("+1 bullish, -1 bearish, 0 range"))
    rolling_volume_20 = _float(_("rolling volume 20"))
    delta = _float(_("delta"))
    buy_sell_ratio = _float(_("buy/sell ratio"))
    liquidation_intensity = _float(_("liquidation intensity"))
    volume_spike_score = _float(_("volume spike score"))
    long_short_ratio = _float(_("long/short ratio"))
    funding_rate_percentile = _float(_("funding rate percentile"))
    exchange_inflow = _float(_("exchange inflow"))
    open_interest_change = _float(_("open interest change"))
    rsi_14 = _float(_("RSI 14"))
    sma_20 = _float(_("SMA 20"))
    sma_50 = _float(_("SMA 50"))
    ema_20 = _float(_("EMA 20"))
    vwap_20 = _float(_("VWAP 20"))
    hl_range = _float(_("high-low range"))
    bb_upper_20 = _float(_("Bollinger upper 20"))
    bb_lower_20 = _float(_("Bollinger lower 20"))
    rsi_avg_gain = _float(_("RSI average gain"))
    rsi_avg_loss = _float(_("RSI average loss"))
    # Quality, provenance, revisions.
    quality_score = _float(_("quality score"), help_text=_("0-1"))
    quality_flags = models.IntegerField(_("quality flags"), default=0, help_text=_("bits of QualityFlag"))
    source = models.CharField(_("source"), max_length=32)
    revision = models.PositiveIntegerField(_("revision"), default=1)
    features_revision = models.PositiveIntegerField(
        _("features revision"),
        null=True,
        blank=True,
        help_text=_("revision the features were computed for; NULL = to compute"),
    )
    computed_at = models.DateTimeField(_("computed at"), null=True, blank=True)
    # One row timestamp (when it was last written); `computed_at` says when its features were.
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, db_default=Now())

    class Meta:
        verbose_name_plural = _("market data v2 candles")
        db_table = "market_data_v2"
        verbose_name = _("market data v2 candle")
        # Range-partitioned by ts, one partition a year, like market_data (docs/storage.md;
        # DDL in enrichment migration 0008_market_data_v2_partitioned). Each index and its query:
        constraints = [
            # The database's primary key: the upsert's ON CONFLICT, every read of a series
            # (features, quality, charts, live's newest bar), the admin's ordering.
            models.UniqueConstraint(fields=["symbol", "timeframe", "ts"], name="uniq_market_data_v2_bar"),
        ]
        indexes = [
            # `id` lookups (the admin's change page): a BRIN index of a few kB per partition.
            BrinIndex(fields=["id"], name="market_data_v2_id_brin", pages_per_range=32, autosummarize=True),
            # Not declared here (their predicates are not expressible as a Q), made by migration 0017:
            # market_data_v2_stale (symbol, timeframe, ts) WHERE features_revision IS DISTINCT FROM
            # revision — the feature step's first stale row of a series in one probe; empty once
            # features are computed. market_data_v2_funding (symbol, timeframe, ts) WHERE funding_rate
            # IS NOT NULL — whether a series has funding before its new bars; perpetual futures only.
        ]
        permissions = [
            ("compute_features", "Can compute features"),
            ("run_backfill", "Can run a backfill"),
        ]

    def __str__(self) -> str:
        return f"{self.symbol_id} {self.timeframe} {self.ts:%Y-%m-%d %H:%M} r{self.revision}"

    @property
    def flag_names(self) -> list[str]:
        return QualityFlag.names(self.quality_flags)


class FeatureRun(RunRecord):
    """One run of the feature step or of a backfill (admin, API, command, schedule)."""

    class Kind(models.TextChoices):
        COMPUTE = "compute", _("Compute")
        BACKFILL = "backfill", _("Backfill")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.COMPUTE)
    params = models.JSONField(_("params"), default=dict, blank=True)
    result = models.JSONField(_("result"), null=True, blank=True)

    class Meta:
        verbose_name = _("feature run")
        verbose_name_plural = _("feature runs")
        db_table = "feature_runs"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return gettext("%(kind)s run %(run)s (%(status)s)") % {
            "kind": self.get_kind_display(),
            "run": self.pk,
            "status": self.get_status_display(),
        }


class EnrichmentComputeLog(models.Model):
    """One feature computation for one symbol and timeframe."""

    class Mode(models.TextChoices):
        FULL = "full", _("Full")
        INCREMENTAL = "incremental", _("Incremental")
        NOTHING = "nothing", _("Nothing to do")

    run = models.ForeignKey(
        FeatureRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="logs", verbose_name=_("run")
    )
    # No index of its own: `compute_log_sym_tf` leads with it (the series' history, the cascade
    # from symbols); one btree less for a table the feature step writes one row per series a run.
    symbol = models.ForeignKey(
        Symbol, on_delete=models.CASCADE, related_name="+", db_index=False, verbose_name=_("symbol")
    )
    timeframe = models.CharField(_("timeframe"), max_length=8)
    mode = models.CharField(_("mode"), max_length=16, choices=Mode.choices)
    rows_read = models.BigIntegerField(_("rows read"), default=0)
    rows_written = models.BigIntegerField(_("rows written"), default=0)
    first_ts = models.DateTimeField(_("first ts"), null=True, blank=True)
    last_ts = models.DateTimeField(_("last ts"), null=True, blank=True)
    duration_ms = models.FloatField(_("duration (ms)"), default=0)
    succeeded = models.BooleanField(_("succeeded"), default=True)
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_default=Now(), db_index=True)

    class Meta:
        verbose_name = _("enrichment compute log")
        verbose_name_plural = _("enrichment compute logs")
        db_table = "enrichment_compute_log"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["symbol", "timeframe", "-created_at"], name="compute_log_sym_tf")]

    def __str__(self) -> str:
        return gettext("%(symbol)s %(timeframe)s %(mode)s %(rows)s rows") % {
            "symbol": self.symbol_id,
            "timeframe": self.timeframe,
            "mode": self.get_mode_display(),
            "rows": self.rows_written,
        }


class DataQualityMetric(models.Model):
    """Quality of one symbol, timeframe and trading day (the market's local date)."""

    # Checked per written statement, not per row, as market_data_v2's (migration 0013).
    symbol = models.ForeignKey(
        Symbol,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,
        verbose_name=_("symbol"),
    )
    timeframe = models.CharField(_("timeframe"), max_length=8)
    day = models.DateField(_("day"))
    expected_bars = models.IntegerField(_("expected bars"), help_text=_("bars the market's sessions say should exist"))
    actual_bars = models.IntegerField(_("actual bars"))
    completeness = models.FloatField(
        _("completeness"), null=True, blank=True, help_text=_("actual expected bars / expected, 0-1")
    )
    gaps = models.IntegerField(_("gaps"), default=0)
    volume_anomalies = models.IntegerField(_("volume anomalies"), default=0)
    ohlc_inconsistencies = models.IntegerField(_("ohlc inconsistencies"), default=0)
    outside_session = models.IntegerField(_("outside session"), default=0)
    avg_quality_score = models.FloatField(_("avg quality score"), null=True, blank=True)
    computed_at = models.DateTimeField(_("computed at"), auto_now=True, db_default=Now())

    class Meta:
        verbose_name = _("data quality metric")
        verbose_name_plural = _("data quality metrics")
        db_table = "data_quality_metrics"
        ordering = ["symbol", "timeframe", "-day"]
        # In the database this key is the primary key and `id` has a BRIN index only (migration
        # 0014: one btree less for a table the feature step writes one row per series and day).
        constraints = [
            models.UniqueConstraint(fields=["symbol", "timeframe", "day"], name="uniq_quality_metric_day"),
        ]
        indexes = [
            # `id` lookups (the admin's change page).
            BrinIndex(fields=["id"], name="data_quality_metrics_id_brin", pages_per_range=32, autosummarize=True),
        ]

    def __str__(self) -> str:
        return f"{self.symbol_id} {self.timeframe} {self.day}: {self.completeness}"


class EnrichmentStatus(models.Model):
    """Where enrichment stands for one symbol and timeframe."""

    class State(models.TextChoices):
        OK = "ok", _("OK")
        PENDING = "pending", _("Features pending")
        FAILED = "failed", pgettext_lazy("run status", "Failed")

    symbol = models.ForeignKey(
        Symbol, on_delete=models.CASCADE, related_name="+", db_index=False, verbose_name=_("symbol")
    )
    timeframe = models.CharField(_("timeframe"), max_length=8)
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.PENDING)
    rows = models.BigIntegerField(_("rows"), default=0)
    first_ts = models.DateTimeField(_("first ts"), null=True, blank=True)
    last_ts = models.DateTimeField(_("last ts"), null=True, blank=True)
    last_computed_at = models.DateTimeField(_("last computed at"), null=True, blank=True)
    avg_quality_score = models.FloatField(_("avg quality score"), null=True, blank=True)
    completeness = models.FloatField(_("completeness"), null=True, blank=True, help_text=_("over all measured days"))
    # The sums `completeness` is the ratio of, kept so that a run that rewrote a few metric days
    # updates it from those days alone (`feature_batch`); every writer of `completeness` writes
    # them. NULL: not known (a row from before they were kept), the next write recounts them.
    complete_bars = models.BigIntegerField(
        _("complete bars"), null=True, blank=True, help_text=_("sum of LEAST(actual, expected) bars over all days")
    )
    expected_bars = models.BigIntegerField(
        _("expected bars"), null=True, blank=True, help_text=_("sum of expected bars over all days")
    )
    # The sum and count of the rows' quality scores, kept with `rows` by every writer of the row, so
    # that a series that only got new bars is updated from them and its new bars (`feature_batch`).
    # numeric: added exactly run after run, no error builds up. NULL: not known, the next run counts.
    quality_sum = NumericField(
        _("quality sum"),
        null=True,
        blank=True,
        help_text=_("sum of the rows' quality scores (numeric: exact)"),
    )
    quality_n = models.BigIntegerField(
        _("scored rows"), null=True, blank=True, help_text=_("rows with a quality score")
    )
    last_error = models.TextField(_("last error"), blank=True)
    source_synced_until = models.DateTimeField(
        _("source synced until"),
        null=True,
        blank=True,
        help_text=_("market_data.updated_at already copied into market_data_v2"),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, db_default=Now())

    class Meta:
        verbose_name = _("enrichment status")
        db_table = "enrichment_status"
        ordering = ["symbol", "timeframe"]
        verbose_name_plural = _("enrichment status")
        constraints = [
            models.UniqueConstraint(fields=["symbol", "timeframe"], name="uniq_enrichment_status"),
        ]

    def __str__(self) -> str:
        return f"{self.symbol_id} {self.timeframe}: {self.get_state_display()}"


class BackfillState(models.Model):
    """Resumable backfill of one symbol, timeframe and source over [range_start, range_end).

    Work advances in chunks; each chunk's rows and the new `last_completed_ts` commit in
    one transaction, so a worker killed mid-chunk loses that chunk only and the next
    worker resumes right after `last_completed_ts`."""

    class State(models.TextChoices):
        PENDING = "pending", pgettext_lazy("run status", "Pending")
        RUNNING = "running", pgettext_lazy("run status", "Running")
        DONE = "done", pgettext_lazy("run status", "Done")
        FAILED = "failed", pgettext_lazy("run status", "Failed")
        CANCELLED = "cancelled", pgettext_lazy("run status", "Cancelled")  # by an operator; run now resumes it

    symbol = models.ForeignKey(
        Symbol, on_delete=models.CASCADE, related_name="+", db_index=False, verbose_name=_("symbol")
    )
    timeframe = models.CharField(_("timeframe"), max_length=8)
    source = models.CharField(_("source"), max_length=32)
    range_start = models.DateTimeField(_("range start"))
    range_end = models.DateTimeField(_("range end"))
    chunk_bars = models.PositiveIntegerField(_("chunk bars"), default=1000)
    last_completed_ts = models.DateTimeField(
        _("last completed ts"), null=True, blank=True, help_text=_("everything before is stored")
    )
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(
        _("attempts"), default=0, help_text=_("failed attempts of the current chunk")
    )
    next_retry_at = models.DateTimeField(_("next retry at"), null=True, blank=True)
    rows_written = models.BigIntegerField(_("rows written"), default=0)
    chunks_done = models.PositiveIntegerField(_("chunks done"), default=0)
    last_error = models.TextField(_("last error"), blank=True)
    locked_by = models.CharField(_("locked by"), max_length=100, blank=True)
    locked_until = models.DateTimeField(_("locked until"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_default=Now())
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, db_default=Now())

    class Meta:
        verbose_name = _("backfill state")
        verbose_name_plural = _("backfill states")
        db_table = "backfill_state"
        ordering = ["symbol", "timeframe", "source"]
        constraints = [
            models.UniqueConstraint(fields=["symbol", "timeframe", "source"], name="uniq_backfill_state"),
        ]

    def __str__(self) -> str:
        return f"{self.symbol_id} {self.timeframe} {self.source}: {self.get_state_display()} @ {self.last_completed_ts}"

    @property
    def percent(self) -> float | None:
        if not self.last_completed_ts:
            return 0.0
        span = (self.range_end - self.range_start).total_seconds()
        done = (self.last_completed_ts - self.range_start).total_seconds()
        return None if span <= 0 else max(0.0, min(100.0, 100.0 * done / span))


# Freshness targets and critical thresholds (seconds from a bar's close to its features being
# stored) by asset class family, from the old feature-store guide: crypto 30 s, stocks 60 s.
FRESHNESS_DEFAULTS = {"CRYPTO": (30, 120), "STOCK": (60, 300)}


class LiveMarket(models.Model):
    """Live ingestion of one market: on or off, the bar timeframe it polls, and the
    freshness target and critical threshold its series are measured against."""

    market = models.OneToOneField(Market, on_delete=models.CASCADE, related_name="live", verbose_name=_("market"))
    is_enabled = models.BooleanField(_("is enabled"), default=False, help_text=_("Poll this market's active symbols"))
    timeframe = models.CharField(_("timeframe"), max_length=8, default="1m")
    source = models.CharField(
        _("source"),
        max_length=32,
        default="auto",
        help_text=_("Candle source: auto (the providers by priority), BINANCE, ..."),
    )
    freshness_target_seconds = models.PositiveIntegerField(_("freshness target seconds"), default=60)
    critical_seconds = models.PositiveIntegerField(
        _("critical seconds"), default=300, help_text=_("Alert past this lag")
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_default=Now())
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, db_default=Now())

    class Meta:
        verbose_name = _("live market")
        verbose_name_plural = _("live markets")
        db_table = "live_markets"
        ordering = ["market__code"]
        permissions = [("run_live_poll", "Can run a live poll")]

    def __str__(self) -> str:
        return gettext("live %(market)s %(timeframe)s") % {"market": self.market_id, "timeframe": self.timeframe}


class LiveSeries(models.Model):
    """What the poller knows about one live series, written with each poll (a small summary
    row: freshness is read from here, never from market_data_v2)."""

    symbol = models.ForeignKey(Symbol, on_delete=models.CASCADE, related_name="live_series", verbose_name=_("symbol"))
    timeframe = models.CharField(_("timeframe"), max_length=8)
    is_enabled = models.BooleanField(_("is enabled"), default=True, help_text=_("Off: the poller skips this symbol"))
    last_bar_ts = models.DateTimeField(
        _("last bar ts"), null=True, blank=True, help_text=_("Open time of the newest stored bar")
    )
    last_stored_at = models.DateTimeField(
        _("last stored at"), null=True, blank=True, help_text=_("When its features were stored")
    )
    last_lag_seconds = models.FloatField(
        _("last lag seconds"), null=True, blank=True, help_text=_("Bar close to features stored")
    )
    last_polled_at = models.DateTimeField(_("last polled at"), null=True, blank=True)
    bars_stored = models.PositiveBigIntegerField(_("bars stored"), default=0)
    last_error = models.TextField(_("last error"), blank=True)
    alerted_at = models.DateTimeField(_("alerted at"), null=True, blank=True, help_text=_("Last critical-lag alert"))

    class Meta:
        verbose_name = _("live series")
        db_table = "live_series"
        ordering = ["symbol_id", "timeframe"]
        verbose_name_plural = _("live series")
        constraints = [models.UniqueConstraint(fields=["symbol", "timeframe"], name="uniq_live_series")]
        indexes = [models.Index(fields=["last_lag_seconds"], name="live_series_lag")]

    def __str__(self) -> str:
        return f"{self.symbol_id} {self.timeframe}"
