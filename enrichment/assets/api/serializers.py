"""Request and response shapes of the asset-enrichment API, under the one request
policy (etl/api/request_policy.py): snake_case or the old system's camelCase, an
unknown key is a 400 naming it, the old options we do not act on are listed."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from enrichment.assets.models import AssetEnrichmentRun
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


class RunSerializer(serializers.ModelSerializer):
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
