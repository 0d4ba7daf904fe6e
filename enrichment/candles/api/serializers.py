"""Request and response shapes of the candle side's API, under the one request
policy (etl/api/request_policy.py)."""

from __future__ import annotations

from rest_framework import serializers

from enrichment.candles.models import BackfillState, FeatureRun
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


class FeatureRunSerializer(serializers.ModelSerializer):
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
