from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from etl.api.request_policy import PolicySerializer
from etl.models import (
    AssetClass,
    DataProvider,
    DeadLetter,
    Market,
    MarketData,
    Symbol,
    SymbolMapping,
    TradingSession,
)


class AssetClassSerializer(serializers.ModelSerializer):
    class Meta:
        model = AssetClass
        fields = ["id", "code", "name", "description", "is_active", "created_at", "updated_at"]


@extend_schema_field({"type": "string", "pattern": r"^\d{2}:\d{2}$", "example": "09:30"})
class LocalTimeField(serializers.TimeField):
    """A wall-clock time in the market's zone: JSON Schema's "time" format would
    demand a UTC offset, which a weekly session time does not have."""

    def __init__(self, **kwargs):
        super().__init__(format="%H:%M", **kwargs)


class TradingSessionSerializer(serializers.ModelSerializer):
    market = serializers.SlugRelatedField(slug_field="code", read_only=True)
    start_time = LocalTimeField(read_only=True)
    end_time = LocalTimeField(read_only=True)

    class Meta:
        model = TradingSession
        fields = ["id", "market", "name", "start_weekday", "start_time", "end_weekday", "end_time", "is_active"]


class MarketSerializer(serializers.ModelSerializer):
    default_asset_class = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Market
        fields = [
            "id",
            "code",
            "name",
            "mic",
            "timezone",
            "currency",
            "country",
            "default_asset_class",
            "is_active",
            "created_at",
            "updated_at",
        ]


class DataProviderSerializer(serializers.ModelSerializer):
    has_api_key = serializers.BooleanField(read_only=True)

    class Meta:
        model = DataProvider
        fields = [
            "id",
            "code",
            "name",
            "base_url",
            "rate_limit_per_minute",
            "priority",
            "timeout_seconds",
            "requires_api_key",
            "has_api_key",
            "is_enabled",
        ]


class SymbolMappingSerializer(serializers.ModelSerializer):
    provider = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = SymbolMapping
        fields = ["provider", "provider_symbol", "origin", "validated_at", "is_valid"]


class SymbolSerializer(serializers.ModelSerializer):
    market = serializers.SlugRelatedField(slug_field="code", read_only=True)
    asset_class = serializers.SlugRelatedField(slug_field="code", read_only=True)
    mappings = SymbolMappingSerializer(many=True, read_only=True)

    class Meta:
        model = Symbol
        fields = [
            "id",
            "ticker",
            "market",
            "asset_class",
            "base_currency",
            "quote_currency",
            "name",
            "sector",
            "industry",
            "country",
            "market_cap",
            "description",
            "website",
            "category",
            "is_active",
            "data_quality_score",
            "source",
            "inference_confidence",
            "enriched_at",
            "mappings",
        ]


class MarketDataSerializer(serializers.ModelSerializer):
    class Meta:
        model = MarketData
        fields = [
            "id",
            "ticker",
            "market",
            "timeframe",
            "ts",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "adj_close",
            "asset_class",
            "symbol",
            "extra",
            "import_file_id",
        ]


class BootstrapRequestSerializer(PolicySerializer):
    """Body of bootstrap-reference-data (the old `overwriteExisting` is `overwrite`)."""

    overwrite = serializers.BooleanField(required=False, help_text="Reset existing records to the defaults")
    run_async = serializers.BooleanField(
        default=True, help_text="Default true: a pipeline run of the step bootstrap (202); false: in the request"
    )

    old_names = {"overwriteExisting": "overwrite"}


class BootstrapQuerySerializer(PolicySerializer):
    """The old guide's query form: `?overwriteExisting=false`."""

    overwrite = serializers.BooleanField(required=False, help_text="as in the body; the body wins when both say")

    old_names = {"overwriteExisting": "overwrite"}


class ProblemSerializer(serializers.Serializer):
    severity = serializers.CharField()
    code = serializers.CharField()
    message = serializers.CharField()
    object = serializers.CharField()


class ValidationReportSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    problem_count = serializers.IntegerField()
    problems = ProblemSerializer(many=True)


class BootstrapResultSerializer(serializers.Serializer):
    run_id = serializers.IntegerField(help_text="the pipeline run that recorded it")
    created = serializers.DictField(child=serializers.IntegerField())
    updated = serializers.DictField(child=serializers.IntegerField())
    unchanged = serializers.DictField(child=serializers.IntegerField())
    total_created = serializers.IntegerField()
    total_updated = serializers.IntegerField()
    ignored_options = serializers.DictField(child=serializers.CharField())


class ReferenceTableSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    expected = serializers.IntegerField(help_text="rows bootstrap creates")
    missing = serializers.ListField(child=serializers.CharField(), help_text="codes bootstrap would create")


class CountSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="market_data: PostgreSQL's estimate")


class BootstrapTablesSerializer(serializers.Serializer):
    asset_classes = ReferenceTableSerializer()
    markets = ReferenceTableSerializer()
    data_providers = ReferenceTableSerializer()
    trading_sessions = CountSerializer()
    symbols = CountSerializer()
    market_data = CountSerializer()


class BootstrapStatusSerializer(serializers.Serializer):
    complete = serializers.BooleanField(help_text="every reference table holds its defaults")
    tables = BootstrapTablesSerializer()


class ErrorSerializer(serializers.Serializer):
    """The API's one error shape (see etl.api.exceptions)."""

    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False, help_text="field -> messages"
    )


class DeadLetterSerializer(serializers.ModelSerializer):
    """Work that failed for good (imports, enrichment): one shape for every app."""

    payload = serializers.DictField(
        read_only=True,
        help_text="what is needed to try again, by kind: import_file {file_id, job_id, market}; enrichment "
        "{symbol_id, ticker, market, options, sources}; backfill {backfill_state_id, from, to}",
    )

    class Meta:
        model = DeadLetter
        fields = ["id", "kind", "ref", "payload", "error", "attempts", "created_at", "resubmitted_at", "resolved_at"]


# ---------------------------------------------------------------------------
# Health: one shape for /api/etl/health, /api/batch-processing/health and
# /api/etl/asset-class-correction/health (etl.health.health_report).


class CheckSerializer(serializers.Serializer):
    """A check every health endpoint runs: `ok`, and its figures (or `error` when it could not run)."""

    ok = serializers.BooleanField()
    error = serializers.CharField(required=False, help_text="why the check failed to run")


class DatabaseCheckSerializer(CheckSerializer):
    pass


class QueueCheckSerializer(CheckSerializer):
    broker = serializers.CharField(required=False, help_text="ORM or Redis")
    queued = serializers.IntegerField(required=False)
    oldest_queued_seconds = serializers.FloatField(required=False, allow_null=True)


class WorkersCheckSerializer(CheckSerializer):
    clusters = serializers.IntegerField(required=False)
    workers = serializers.IntegerField(required=False)
    missing_seconds = serializers.FloatField(required=False, help_text="how long no cluster has reported")


class QueueAgeCheckSerializer(CheckSerializer):
    oldest_seconds = serializers.FloatField(allow_null=True)
    limit_seconds = serializers.FloatField()


class StalledRunsCheckSerializer(CheckSerializer):
    runs = serializers.DictField(
        child=serializers.ListField(child=serializers.IntegerField()), help_text="run kind -> ids of stalled runs"
    )
    limit_minutes = serializers.FloatField()


class SigningKeyCheckSerializer(CheckSerializer):
    workers = serializers.ListField(child=serializers.CharField(), required=False)
    reason = serializers.CharField(required=False)


class ChecksSerializer(serializers.Serializer):
    """The checks by name. `database` and `queue` always; the others once both answer
    (an unhealthy report stops there). Apps' own checks (`provider_circuits`, an
    endpoint's extra such as `imports`) follow the same shape: `ok` and figures."""

    database = DatabaseCheckSerializer()
    queue = QueueCheckSerializer()
    workers = WorkersCheckSerializer(required=False)
    queue_age = QueueAgeCheckSerializer(required=False)
    stalled_runs = StalledRunsCheckSerializer(required=False)
    signing_key = SigningKeyCheckSerializer(required=False)


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["healthy", "degraded", "unhealthy"], help_text="unhealthy (HTTP 503): database or broker down"
    )
    checks = ChecksSerializer()


class RunNowSerializer(serializers.Serializer):
    """A schedule fired now: the task it queued (its scheduler's next run stays as it was)."""

    schedule_id = serializers.IntegerField()
    name = serializers.CharField(allow_blank=True)
    func = serializers.CharField(help_text="the task the schedule runs")
    task_id = serializers.CharField(help_text="django-q2's name for the queued task (admin: Queued/Successful tasks)")
