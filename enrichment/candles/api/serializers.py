"""Request and response shapes of the candle side's API, under the one request
policy (etl/api/request_policy.py)."""

from __future__ import annotations

from django.db import models
from rest_framework import serializers

from enrichment.candles.feature_list import FEATURES
from enrichment.candles.models import CANDLE_COLUMNS, BackfillState, FeatureRun, MarketDataV2
from etl.api.request_policy import PolicySerializer

LIST_MAX = 1000  # symbols or timeframes one trigger names


class TriggerSerializer(PolicySerializer):
    symbols = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, default=list, max_length=LIST_MAX
    )
    timeframes = serializers.ListField(
        child=serializers.CharField(max_length=8), required=False, default=list, max_length=LIST_MAX
    )
    full = serializers.BooleanField(required=False, default=False)
    run_async = serializers.BooleanField(
        required=False, default=True, help_text="false: compute in the request and answer 200"
    )


class FeatureRunParamsSerializer(serializers.Serializer):
    """What a compute run was asked (a backfill's run records none)."""

    symbols = serializers.ListField(child=serializers.CharField(), required=False, help_text="empty: every series")
    timeframes = serializers.ListField(child=serializers.CharField(), required=False)
    full = serializers.BooleanField(required=False, help_text="recompute from the first bar")
    market = serializers.CharField(allow_null=True, required=False, help_text="a scheduled run's market")
    close = serializers.CharField(
        allow_null=True, allow_blank=True, required=False, help_text="the close a scheduled run follows (ISO)"
    )
    ignored_options = serializers.DictField(child=serializers.CharField(), required=False)


class FeatureRunResultCountsSerializer(serializers.Serializer):
    run_id = serializers.IntegerField(allow_null=True)
    series = serializers.IntegerField()
    candles_inserted = serializers.IntegerField()
    candles_updated = serializers.IntegerField()
    amendments = serializers.IntegerField()
    rows_computed = serializers.IntegerField()
    failed = serializers.IntegerField()
    errors = serializers.ListField(child=serializers.CharField())


class FeatureRunSerializer(serializers.ModelSerializer):
    params = FeatureRunParamsSerializer(read_only=True)
    result = FeatureRunResultCountsSerializer(read_only=True, allow_null=True, help_text="null until it ends")
    run_id = serializers.IntegerField(source="id", read_only=True)
    percent = serializers.FloatField(read_only=True, allow_null=True)
    eta_seconds = serializers.FloatField(read_only=True, allow_null=True)
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)
    ignored_options = serializers.SerializerMethodField()

    class Meta:
        model = FeatureRun
        fields = [
            "id",
            "run_id",
            "kind",
            "status",
            "requested_by",
            "params",
            "result",
            "created_at",
            "started_at",
            "finished_at",
            "progress_done",
            "progress_total",
            "percent",
            "eta_seconds",
            "duration_seconds",
            "cancel_requested",
            "error",
            "ignored_options",
        ]

    def get_ignored_options(self, run: FeatureRun) -> dict[str, str]:
        return dict((run.params or {}).get("ignored_options") or {})


class FeatureRunAcceptedSerializer(FeatureRunSerializer):
    """The 202 answer: the queued run and where to read its status."""

    location = serializers.URLField(read_only=True, help_text="the run's status (also the Location header)")

    class Meta(FeatureRunSerializer.Meta):
        fields = [*FeatureRunSerializer.Meta.fields, "location"]


class BackfillSerializer(serializers.ModelSerializer):
    symbol = serializers.CharField(source="symbol.ticker", read_only=True)
    market = serializers.CharField(source="symbol.market.code", read_only=True)
    percent = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = BackfillState
        fields = [
            "id",
            "symbol",
            "market",
            "timeframe",
            "source",
            "state",
            "range_start",
            "range_end",
            "chunk_bars",
            "last_completed_ts",
            "percent",
            "attempts",
            "next_retry_at",
            "rows_written",
            "chunks_done",
            "last_error",
            "locked_by",
            "locked_until",
            "created_at",
            "updated_at",
        ]


class BackfillListQuery(PolicySerializer):
    """The filters of the backfill list (besides the pagination's parameters)."""

    state = serializers.ChoiceField(choices=BackfillState.State.choices, required=False)
    source = serializers.CharField(max_length=32, required=False)
    timeframe = serializers.CharField(max_length=8, required=False)
    symbol = serializers.CharField(max_length=64, required=False, help_text="ticker")
    # Read and bounded by ApiPagination; declared so the policy knows them.
    cursor = serializers.CharField(required=False, max_length=1000)
    page = serializers.CharField(required=False, max_length=20)
    page_size = serializers.CharField(required=False, max_length=20)


class BackfillCreateSerializer(PolicySerializer):
    """POST /api/runs/backfills/: the series to backfill (every symbol × timeframe) and from where."""

    symbols = serializers.ListField(
        child=serializers.CharField(max_length=64),
        min_length=1,
        max_length=100,
        help_text='each a ticker, "TICKER@MARKET" or a symbol id',
    )
    timeframes = serializers.ListField(
        child=serializers.CharField(max_length=8), min_length=1, max_length=10, help_text="e.g. 1h, 1d"
    )
    source = serializers.CharField(default="market_data", max_length=32, help_text="a candle source code")
    start = serializers.DateTimeField(required=False, help_text="default: the series' local candles' start")
    end = serializers.DateTimeField(required=False, help_text="exclusive; default: the local candles' end")
    chunk_bars = serializers.IntegerField(default=1000, min_value=1, max_value=100_000)

    def validate(self, attrs):
        if attrs.get("start") and attrs.get("end") and attrs["start"] >= attrs["end"]:
            raise serializers.ValidationError({"start": "must be before end"})
        return attrs


class BackfillsAcceptedSerializer(serializers.Serializer):
    """202: the backfills created (or widened) and queued; Location is the first one's."""

    backfills = BackfillSerializer(many=True)
    queued = serializers.IntegerField(help_text="handed to a worker now (one done or held by a live worker is not)")
    run_id = serializers.IntegerField(help_text="the first backfill's id")
    location = serializers.URLField(help_text="the first backfill (also the Location header)")
    ignored_options = serializers.DictField(child=serializers.CharField(), required=False)


# ---------------------------------------------------------------------------
# Response shapes of /api/v1/ (the schema documents every field)


class TimeframeStatusSerializer(serializers.Serializer):
    timeframe = serializers.CharField()
    state = serializers.CharField()
    rows = serializers.IntegerField()
    first_ts = serializers.DateTimeField(allow_null=True)
    last_ts = serializers.DateTimeField(allow_null=True)
    last_computed_at = serializers.DateTimeField(allow_null=True)
    avg_quality_score = serializers.FloatField(allow_null=True)
    completeness = serializers.FloatField(allow_null=True)
    last_error = serializers.CharField(allow_blank=True)


class SymbolBackfillSerializer(serializers.Serializer):
    timeframe = serializers.CharField()
    source = serializers.CharField()
    state = serializers.CharField()
    range_start = serializers.DateTimeField()
    range_end = serializers.DateTimeField()
    last_completed_ts = serializers.DateTimeField(allow_null=True)
    percent = serializers.FloatField(allow_null=True)
    attempts = serializers.IntegerField()
    next_retry_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField(allow_blank=True)


class SymbolStatusSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    market = serializers.CharField()
    symbol_id = serializers.IntegerField()
    timeframes = TimeframeStatusSerializer(many=True)
    backfills = SymbolBackfillSerializer(many=True)
    ignored_options = serializers.DictField(child=serializers.CharField(), required=False)


class SeriesFreshnessSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    market = serializers.CharField()
    timeframe = serializers.CharField()
    lag_seconds = serializers.FloatField(allow_null=True)
    target_seconds = serializers.IntegerField()
    critical_seconds = serializers.IntegerField()
    last_bar_ts = serializers.DateTimeField(allow_null=True)
    stale = serializers.BooleanField()
    critical = serializers.BooleanField()
    enabled = serializers.BooleanField()
    last_error = serializers.CharField(allow_blank=True)


class FreshnessSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    market = serializers.CharField()
    series = SeriesFreshnessSerializer(many=True, help_text="the symbol's live series")


class LastFeatureRunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()


class EnrichmentMetricsSerializer(serializers.Serializer):
    series = serializers.IntegerField()
    series_by_state = serializers.DictField(child=serializers.IntegerField(), help_text="state -> series")
    rows = serializers.IntegerField()
    avg_quality_score = serializers.FloatField(allow_null=True)
    avg_completeness = serializers.FloatField(allow_null=True)
    since = serializers.DateTimeField(help_text="the activity figures below count from here (24 h)")
    computations = serializers.IntegerField()
    failures = serializers.IntegerField()
    rows_written = serializers.IntegerField()
    avg_duration_ms = serializers.FloatField(allow_null=True)
    max_duration_ms = serializers.FloatField(allow_null=True)
    backfills_by_state = serializers.DictField(child=serializers.IntegerField(), help_text="state -> backfills")
    last_run = LastFeatureRunSerializer(allow_null=True)
    ignored_options = serializers.DictField(child=serializers.CharField(), required=False)


class FeatureRunResultSerializer(serializers.Serializer):
    """`runAsync: false`: the compute run done in the request."""

    run_id = serializers.IntegerField(allow_null=True)
    series = serializers.IntegerField()
    candles_inserted = serializers.IntegerField()
    candles_updated = serializers.IntegerField()
    amendments = serializers.IntegerField()
    rows_computed = serializers.IntegerField()
    failed = serializers.IntegerField()
    errors = serializers.ListField(child=serializers.CharField())
    ignored_options = serializers.DictField(child=serializers.CharField(), required=False)


class QualitySummarySerializer(serializers.Serializer):
    days = serializers.IntegerField()
    expected_bars = serializers.IntegerField(allow_null=True)
    actual_bars = serializers.IntegerField(allow_null=True)
    gaps = serializers.IntegerField(allow_null=True)
    volume_anomalies = serializers.IntegerField(allow_null=True)
    ohlc_inconsistencies = serializers.IntegerField(allow_null=True)
    outside_session = serializers.IntegerField(allow_null=True)
    avg_quality_score = serializers.FloatField(allow_null=True)
    first_day = serializers.DateField(allow_null=True)
    last_day = serializers.DateField(allow_null=True)


class QualityDaySerializer(serializers.Serializer):
    timeframe = serializers.CharField()
    day = serializers.DateField()
    expected_bars = serializers.IntegerField()
    actual_bars = serializers.IntegerField()
    completeness = serializers.FloatField(allow_null=True)
    gaps = serializers.IntegerField()
    volume_anomalies = serializers.IntegerField()
    ohlc_inconsistencies = serializers.IntegerField()
    outside_session = serializers.IntegerField()
    avg_quality_score = serializers.FloatField(allow_null=True)


class DataQualitySerializer(serializers.Serializer):
    symbol = serializers.CharField()
    market = serializers.CharField()
    summary = QualitySummarySerializer()
    days = QualityDaySerializer(many=True, help_text="newest first, at most 366")
    ignored_options = serializers.DictField(child=serializers.CharField(), required=False)


def _feature_row_field(name: str) -> serializers.Field:
    """The JSON type of one column of a feature row (enrichment.candles.selectors.feature_rows)."""
    if name in ("trend_direction", "market_structure"):
        return serializers.CharField(allow_null=True, help_text="a label: up/down/neutral, bullish/bearish/range")
    model_field = MarketDataV2._meta.get_field(name)
    if isinstance(model_field, models.FloatField):
        return serializers.FloatField(allow_null=model_field.null)
    return serializers.IntegerField(allow_null=model_field.null)


# One property per column of a row: the candle, every feature, quality and provenance.
FeatureRowSerializer = type(
    "FeatureRowSerializer",
    (serializers.Serializer,),
    {
        "ts": serializers.DateTimeField(),
        **{name: _feature_row_field(name) for name in (*CANDLE_COLUMNS, *FEATURES)},
        "quality_score": serializers.FloatField(allow_null=True),
        "quality_flags": serializers.ListField(child=serializers.CharField(), help_text="QualityFlag names"),
        "source": serializers.CharField(),
        "revision": serializers.IntegerField(),
    },
)


class MarketFeaturesSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    market = serializers.CharField()
    timeframe = serializers.CharField()
    count = serializers.IntegerField()
    results = FeatureRowSerializer(many=True, help_text="oldest first")
    ignored_options = serializers.DictField(child=serializers.CharField(), required=False)
