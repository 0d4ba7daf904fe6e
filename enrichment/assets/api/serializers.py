"""Request and response shapes of the asset-enrichment API, under the one request
policy (etl/api/request_policy.py): snake_case or the old system's camelCase, an
unknown key is a 400 naming it, the old options we do not act on are listed."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from enrichment.assets.models import AssetEnrichmentRun
from enrichment.assets.selectors import COVERAGE_FIELDS
from enrichment.assets.services.enrich_options import OFFLINE_SOURCES, SELECTIONS, timespan_seconds
from etl.api.request_policy import IdField, PolicySerializer, SourcesField

STALE_DAYS_MAX = 3650  # ten years; more overflows date arithmetic and means "all" anyway
# The old response names the guides tell operators to read -> ours (docs/api.md, "Glossary").
ENRICH_OLD_NAMES = {"SuccessfullyEnriched": "enriched", "PartiallyEnriched": "partial"}
STATUS_OLD_NAMES = {"EnrichmentCoverage": "coverage_percent"}
_WHOLE_ANSWER = "ignored: every source's whole metadata answer is read in one call; leaving parts out saves nothing"


class SecondsField(serializers.FloatField):
    """Seconds as a number or as the old system's .NET TimeSpan (``"00:00:00.500"``)."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, str) and ":" in data:
            try:
                data = timespan_seconds(data)
            except ValueError as exc:
                raise serializers.ValidationError(str(exc), code="invalid") from None
        return super().to_internal_value(data)


class StatusQuerySerializer(PolicySerializer):
    stale_days = serializers.IntegerField(min_value=1, max_value=STALE_DAYS_MAX, default=30)


class EnrichRequestSerializer(PolicySerializer):
    old_names = {
        "enabledSources": "sources",
        "maxConcurrency": "concurrency",
        "overwriteExistingData": "overwrite",
        "requestTimeout": "timeout",
    }
    ignored_options = {
        "includeCompanyInfo": _WHOLE_ANSWER,
        "includeMarketCap": _WHOLE_ANSWER,
        "includeSectorInfo": _WHOLE_ANSWER,
        "includePriceInfo": f"{_WHOLE_ANSWER}; prices are candles (/api/v1/...)",
    }

    sources = SourcesField(
        always_available=OFFLINE_SOURCES,
        required=False,
        allow_null=True,
        help_text="provider codes (or CATALOGUE, LOCAL); each must be able to run. Empty: every usable one",
    )
    selection = serializers.ChoiceField(choices=SELECTIONS, default="never")
    stale_days = serializers.IntegerField(min_value=1, max_value=STALE_DAYS_MAX, default=30)
    symbols = serializers.ListField(child=serializers.CharField(max_length=64), required=False, default=list)
    concurrency = serializers.IntegerField(min_value=1, max_value=16, default=3)
    batch_size = serializers.IntegerField(min_value=1, max_value=10_000, default=50)
    overwrite = serializers.BooleanField(default=False)
    rate_limit_delay = SecondsField(min_value=0, max_value=60, default=0.0, help_text='seconds or "hh:mm:ss.fff"')
    max_retries = serializers.IntegerField(min_value=1, max_value=10, default=3)
    timeout = SecondsField(min_value=0.1, max_value=300, required=False, allow_null=True)
    run_async = serializers.BooleanField(default=True, help_text="false: run in the request and answer 200")


class RunOptionsSerializer(serializers.Serializer):
    """What the run was asked (EnrichOptions), under our names."""

    sources = serializers.ListField(
        child=serializers.CharField(), allow_null=True, required=False, help_text="null: every usable source"
    )
    selection = serializers.CharField(required=False, help_text="never, stale or all")
    stale_days = serializers.IntegerField(required=False)
    symbols = serializers.ListField(child=serializers.CharField(), required=False)
    symbol_ids = serializers.ListField(child=serializers.IntegerField(), required=False)
    concurrency = serializers.IntegerField(required=False)
    batch_size = serializers.IntegerField(required=False)
    overwrite = serializers.BooleanField(required=False)
    rate_limit_delay = serializers.FloatField(required=False, help_text="seconds")
    max_retries = serializers.IntegerField(required=False)
    timeout = serializers.FloatField(allow_null=True, required=False, help_text="seconds; null: the provider's")
    dead_letter = serializers.BooleanField(required=False)
    ignored_options = serializers.DictField(child=serializers.CharField(), required=False)


class RunSerializer(serializers.ModelSerializer):
    options = RunOptionsSerializer(read_only=True)
    percent = serializers.FloatField(read_only=True, allow_null=True)
    eta_seconds = serializers.FloatField(read_only=True, allow_null=True)
    run_id = serializers.IntegerField(source="id", read_only=True)
    ignored_options = serializers.SerializerMethodField()
    SuccessfullyEnriched = serializers.IntegerField(source="enriched", read_only=True, help_text="old name: enriched")
    PartiallyEnriched = serializers.IntegerField(source="partial", read_only=True, help_text="old name: partial")

    class Meta:
        model = AssetEnrichmentRun
        fields = [
            "id",
            "run_id",
            "status",
            "requested_by",
            "options",
            "created_at",
            "started_at",
            "finished_at",
            "symbols_total",
            "enriched",
            "partial",
            "failed",
            "dead_lettered",
            "progress_done",
            "progress_total",
            "percent",
            "eta_seconds",
            "error",
            "ignored_options",
            "SuccessfullyEnriched",
            "PartiallyEnriched",
        ]

    def get_ignored_options(self, run: AssetEnrichmentRun) -> dict[str, str]:
        return dict((run.options or {}).get("ignored_options") or {})


class RunAcceptedSerializer(RunSerializer):
    """The 202 answer: the queued run and where to read its status."""

    location = serializers.URLField(read_only=True, help_text="the run's status (also the Location header)")

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "location"]


class ResubmitRequestSerializer(PolicySerializer):
    ids = serializers.ListField(child=IdField(), required=False, allow_null=True, max_length=10_000)
    run_async = serializers.BooleanField(default=False)


class DeadLetterQuerySerializer(PolicySerializer):
    include_resolved = serializers.BooleanField(default=False)


class DiscoverRequestSerializer(PolicySerializer):
    provider = serializers.CharField(default="BINANCE", max_length=32)
    quote_assets = serializers.ListField(child=serializers.CharField(max_length=16), default=["USDT"], max_length=100)


# ---------------------------------------------------------------------------
# Response shapes (the schema documents every field)


class QualitySerializer(serializers.Serializer):
    score = serializers.IntegerField(help_text="0-100")
    completeness = serializers.FloatField()
    freshness = serializers.FloatField()
    agreement = serializers.FloatField(allow_null=True)


class SourceOutcomeSerializer(serializers.Serializer):
    status = serializers.CharField(help_text="ok, empty, failed, unavailable or n/a")
    error = serializers.CharField(allow_blank=True)


class SymbolOutcomeSerializer(serializers.Serializer):
    symbol = serializers.CharField(help_text="TICKER@MARKET")
    outcome = serializers.CharField(help_text="enriched, partial or failed")
    sources = serializers.DictField(child=SourceOutcomeSerializer(), help_text="provider code -> how it did")
    fields_updated = serializers.ListField(child=serializers.CharField())
    quality = QualitySerializer()
    dead_lettered = serializers.BooleanField()


class EnrichResultSerializer(serializers.Serializer):
    """`runAsync: false`: the run done in the request (the first 50 symbols' outcomes)."""

    run_id = serializers.IntegerField()
    total = serializers.IntegerField()
    enriched = serializers.IntegerField()
    partial = serializers.IntegerField()
    failed = serializers.IntegerField()
    dead_lettered = serializers.IntegerField()
    sources = serializers.ListField(child=serializers.CharField())
    cancelled = serializers.BooleanField()
    symbols = SymbolOutcomeSerializer(many=True)
    SuccessfullyEnriched = serializers.IntegerField(help_text="old name of enriched")  # noqa: N815 - the old name
    PartiallyEnriched = serializers.IntegerField(help_text="old name of partial")  # noqa: N815 - the old name
    ignored_options = serializers.DictField(child=serializers.CharField(), required=False)


class FieldFillSerializer(serializers.Serializer):
    filled = serializers.IntegerField()
    percent = serializers.FloatField(allow_null=True)
    expected = serializers.BooleanField(help_text="a symbol of this market should carry it")


# One property per metadata field the coverage counts (enrichment.assets.selectors.COVERAGE_FIELDS).
FieldFillsSerializer = type(
    "FieldFillsSerializer", (serializers.Serializer,), {name: FieldFillSerializer() for name in COVERAGE_FIELDS}
)
FieldPercentsSerializer = type(
    "FieldPercentsSerializer",
    (serializers.Serializer,),
    {name: serializers.FloatField(allow_null=True) for name in COVERAGE_FIELDS},
)


class MarketCoverageSerializer(serializers.Serializer):
    market = serializers.CharField()
    targets = serializers.IntegerField(help_text="active symbols")
    enriched = serializers.IntegerField()
    partial = serializers.IntegerField()
    coverage_percent = serializers.FloatField(allow_null=True)
    fields = FieldFillsSerializer()
    missing = serializers.ListField(child=serializers.CharField(), help_text="expected fields some symbol lacks")


class CoverageSerializer(serializers.Serializer):
    targets = serializers.IntegerField()
    enriched = serializers.IntegerField()
    partial = serializers.IntegerField()
    coverage_percent = serializers.FloatField(allow_null=True, help_text="(enriched + partial) / targets")
    goal_percent = serializers.FloatField()
    fields = FieldPercentsSerializer(help_text="field -> percent of targets that carry it")
    markets = MarketCoverageSerializer(many=True)


class StatusRunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    requested_by = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    total = serializers.IntegerField()
    enriched = serializers.IntegerField()
    partial = serializers.IntegerField()
    failed = serializers.IntegerField()
    dead_lettered = serializers.IntegerField()
    percent = serializers.FloatField(allow_null=True)
    error = serializers.CharField(allow_blank=True)


class EnrichmentStatusSerializer(serializers.Serializer):
    symbols = serializers.IntegerField(help_text="active symbols")
    enriched = serializers.IntegerField()
    never_enriched = serializers.IntegerField()
    stale = serializers.IntegerField()
    stale_days = serializers.IntegerField()
    coverage_percent = serializers.FloatField(allow_null=True)
    average_quality = serializers.FloatField(allow_null=True)
    open_dead_letters = serializers.IntegerField()
    coverage = CoverageSerializer()
    runs = StatusRunSerializer(many=True, help_text="the latest ten")
    EnrichmentCoverage = serializers.FloatField(allow_null=True, help_text="old name of coverage_percent")  # noqa: N815
    ignored_options = serializers.DictField(child=serializers.CharField(), required=False)


class ProviderHealthSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    priority = serializers.IntegerField()
    enabled = serializers.BooleanField()
    requires_api_key = serializers.BooleanField()
    has_api_key = serializers.BooleanField()
    availability = serializers.ChoiceField(
        choices=[
            "available",
            "disabled",
            "no_key",
            "circuit_open",
            "half_open",
            "blocked",
            "unreachable",
            "no_client",
        ]
    )
    available = serializers.BooleanField()
    circuit_state = serializers.CharField()
    consecutive_failures = serializers.IntegerField()
    retry_at = serializers.DateTimeField(allow_null=True)
    blocked_until = serializers.DateTimeField(allow_null=True)
    budget_limit = serializers.IntegerField()
    budget_used = serializers.IntegerField()
    budget_remaining = serializers.IntegerField()
    calls_24h = serializers.IntegerField()
    success_rate_24h = serializers.FloatField(allow_null=True)
    last_error = serializers.CharField(allow_blank=True)
    last_success_at = serializers.DateTimeField(allow_null=True)
    last_failure_at = serializers.DateTimeField(allow_null=True)


class SourcesStatusSerializer(serializers.Serializer):
    providers = ProviderHealthSerializer(many=True)


class ResubmitResultSerializer(serializers.Serializer):
    resubmitted = serializers.IntegerField()
    resolved = serializers.IntegerField()
    still_failing = serializers.IntegerField()
    run_ids = serializers.ListField(child=serializers.IntegerField())
    ignored_options = serializers.DictField(child=serializers.CharField(), required=False)


class ResubmitQueuedSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["queued"])
    dead_letters = serializers.IntegerField(help_text="letters queued to be resubmitted")
    ignored_options = serializers.DictField(child=serializers.CharField(), required=False)


class DiscoverResultSerializer(serializers.Serializer):
    provider = serializers.CharField()
    listed = serializers.IntegerField()
    created = serializers.IntegerField()
    existing = serializers.IntegerField()
    mappings_created = serializers.IntegerField()
    ignored_options = serializers.DictField(child=serializers.CharField(), required=False)


class MappingValidationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    provider = serializers.CharField()
    provider_symbol = serializers.CharField()
    is_valid = serializers.BooleanField()
