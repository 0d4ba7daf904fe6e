"""Request and response shapes of the sync, status and pipeline endpoints.

Requests follow the request policy (etl/api/request_policy.py): snake_case and
the old system's camelCase names (`batchSize`, `continueOnComponentFailure`,
`maxExecutionTime`, ...); unknown keys are a 400; the old options we do not
act on come back under `ignored_options`."""

from __future__ import annotations

from typing import Any
from zoneinfo import available_timezones

from django.conf import settings
from django.utils.translation import gettext
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from etl.api.request_policy import PolicySerializer
from etl.models import PipelineRun, PipelineStepRun
from etl.pipeline import registered_steps
from etl.services.pipeline import run_gates, run_outcome

# The longest time limit a run may ask for: the workers' task timeout (Q_TIMEOUT),
# past which django-q2 would kill it (the old guides plan 2-4 h runs).
MAX_RUN_SECONDS = int(settings.Q_CLUSTER["timeout"])
RUN_ASYNC_HELP = "Default true: queue it and answer 202 with the run; false runs it in the request (at most 300 s)"


class SyncSymbolsRequestSerializer(PolicySerializer):
    batch_size = serializers.IntegerField(default=1000, min_value=1, max_value=1_000_000)
    asset_class_filter = serializers.ListField(
        child=serializers.CharField(max_length=32), required=False, max_length=100
    )
    venue_filter = serializers.ListField(child=serializers.CharField(max_length=32), required=False, max_length=100)
    skip_existing_symbols = serializers.BooleanField(default=True)
    max_processing_time = serializers.DurationField(required=False, help_text='"HH:MM:SS"')
    dry_run = serializers.BooleanField(
        default=False, help_text="List what would be created; write nothing (always in the request)"
    )
    run_async = serializers.BooleanField(default=True, help_text=RUN_ASYNC_HELP)

    ignored_options = {
        "maxConcurrency": "the sync is a few set-based statements; parallel batches would only contend for the "
        "same index pages",
        "autoEnrichMetadata": "enrichment is its own step (enrich-assets, or the pipeline's enrich)",
        "connectionPoolSize": "connections are the server's configuration (CONN_MAX_AGE), not a request's",
    }

    def validate_max_processing_time(self, value):
        if value.total_seconds() <= 0 or value.total_seconds() > MAX_RUN_SECONDS:
            raise serializers.ValidationError(
                gettext("must be from 00:00:01 to %(most)s s") % {"most": MAX_RUN_SECONDS}
            )
        return value

    def step_options(self) -> dict[str, Any]:
        """The options of the pipeline's sync step (etl.services.symbols_sync_step)."""
        d = self.validated_data
        return {
            "batch_size": d["batch_size"],
            "asset_classes": d.get("asset_class_filter") or None,
            "venues": d.get("venue_filter") or None,
            "skip_existing": d["skip_existing_symbols"],
        }

    def max_seconds(self) -> int | None:
        limit = self.validated_data.get("max_processing_time")
        return max(1, round(limit.total_seconds())) if limit is not None else None


class StepNameField(serializers.CharField):
    """A pipeline step's name: pipeline_plan refuses one that is not registered (400 naming it)."""

    def __init__(self, **kwargs: Any):
        super().__init__(max_length=40, **kwargs)


class StepNameFieldExtension(OpenApiSerializerFieldExtension):
    """The schema lists the registered steps (apps register them from ready(), before any schema is made)."""

    target_class = StepNameField

    def map_serializer_field(self, auto_schema, direction):
        return {"type": "string", "enum": [step.name for step in registered_steps()]}


class TimeZoneField(serializers.CharField):
    """An IANA time zone; the services refuse any other (400 naming it)."""

    def __init__(self, **kwargs: Any):
        super().__init__(max_length=64, **kwargs)


class TimeZoneFieldExtension(OpenApiSerializerFieldExtension):
    target_class = TimeZoneField

    def map_serializer_field(self, auto_schema, direction):
        return {"type": "string", "enum": sorted(available_timezones() | {"UTC"}), "example": "Europe/Istanbul"}


class PipelineRequestSerializer(PolicySerializer):
    steps = serializers.ListField(
        child=StepNameField(),
        required=False,
        max_length=20,
        help_text="Default: every default step",
    )
    continue_on_failure = serializers.BooleanField(required=False)
    max_execution_time = serializers.DurationField(required=False, help_text='"HH:MM:SS"')
    max_minutes = serializers.FloatField(required=False, min_value=0.01, max_value=MAX_RUN_SECONDS / 60)
    path = serializers.CharField(
        required=False, max_length=1000, help_text="Import step: file or folder under the data root"
    )
    options = serializers.DictField(required=False, help_text="Step options, e.g. batch_size, clean_symbols")
    run_async = serializers.BooleanField(default=True, help_text=RUN_ASYNC_HELP)
    # The old system's switches; applied to the default steps when `steps` is not given.
    execute_reference_data_bootstrap = serializers.BooleanField(required=False)
    execute_symbol_sync = serializers.BooleanField(required=False)
    execute_asset_enrichment = serializers.BooleanField(required=False)
    validate_after_execution = serializers.BooleanField(required=False)

    old_names = {"continueOnComponentFailure": "continue_on_failure"}
    ignored_options = {
        "executeInParallel": "the steps depend on each other (import, sync, correct, enrich, validate) and run in "
        "that order; parallel work happens inside a step",
        "sendNotificationOnCompletion": "notifications follow the alert rules (docs/alerting.md), not the request",
        "sendNotificationOnFailure": "notifications follow the alert rules (docs/alerting.md: failed runs page)",
    }

    SWITCHES = {
        "execute_reference_data_bootstrap": "bootstrap",
        "execute_symbol_sync": "sync",
        "execute_asset_enrichment": "enrich",
        "validate_after_execution": "validate",
    }

    def service_kwargs(self, default_steps: list[str]) -> dict[str, Any]:
        d = self.validated_data
        steps = d.get("steps")
        if steps is None and any(k in d for k in self.SWITCHES):
            chosen = list(default_steps)
            for key, step in self.SWITCHES.items():
                if d.get(key) is True and step not in chosen:
                    chosen.append(step)
                elif d.get(key) is False and step in chosen:
                    chosen.remove(step)
            steps = chosen
        if steps is not None and not steps:
            raise serializers.ValidationError({"steps": gettext("no step left to run")})
        limit = d.get("max_execution_time")
        max_seconds = round(limit.total_seconds()) if limit is not None else None
        if "max_minutes" in d:
            max_seconds = round(d["max_minutes"] * 60)
        if max_seconds is not None and max_seconds <= 0:
            raise serializers.ValidationError({"max_execution_time": gettext("must be positive")})
        if max_seconds is not None and max_seconds > MAX_RUN_SECONDS:
            raise serializers.ValidationError(
                {
                    "max_execution_time": gettext("at most %(most)s s (the workers' task timeout, Q_TIMEOUT)")
                    % {"most": MAX_RUN_SECONDS}
                }
            )
        options = dict(d.get("options") or {})
        if d.get("path"):
            options["path"] = d["path"]
        return {
            "steps": steps,
            "options": options,
            "continue_on_failure": d.get("continue_on_failure", False),
            "max_seconds": max_seconds,
        }


class ValidateCleanupRequestSerializer(PolicySerializer):
    fix = serializers.BooleanField(default=False, help_text="Repair and record each fix; default: report only")
    fixes = serializers.ListField(
        child=serializers.CharField(max_length=40), required=False, max_length=20, help_text="Issue kinds to repair"
    )


class ScheduleRequestSerializer(PolicySerializer):
    old_names = {"cronExpression": "cron", "timeZone": "timezone"}

    cron = serializers.CharField(max_length=100, help_text='e.g. "0 2 * * *"')
    timezone = TimeZoneField(default="UTC", help_text="IANA zone, e.g. Europe/Istanbul")
    name = serializers.CharField(max_length=100, required=False, default="")
    steps = serializers.ListField(child=StepNameField(), required=False, max_length=20)
    continue_on_failure = serializers.BooleanField(default=True)
    max_minutes = serializers.FloatField(required=False, min_value=0.01, max_value=MAX_RUN_SECONDS / 60)
    options = serializers.DictField(required=False)


class PipelineStepRunSerializer(serializers.ModelSerializer):
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)
    counts = serializers.DictField(
        read_only=True,
        help_text="what the step reports: its own counts, which differ by step (sync: the fields of "
        "/api/etl/sync-symbols; import: the job's row counts; bootstrap: created/updated/unchanged per table; "
        "docs/pipeline.md lists each)",
    )

    class Meta:
        model = PipelineStepRun
        fields = ["name", "order", "status", "started_at", "finished_at", "duration_seconds", "counts", "error"]


class GateResultSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="e.g. asset_class_consistency, min_data_completeness")
    indicator = serializers.CharField(help_text="the indicator the gate reads")
    op = serializers.ChoiceField(choices=["==", ">="])
    threshold = serializers.FloatField()
    severity = serializers.ChoiceField(choices=["error", "warning", "off"])
    value = serializers.FloatField(allow_null=True, help_text="null: not measured (no data to judge)")
    passed = serializers.BooleanField(allow_null=True)
    breached = serializers.BooleanField(help_text="failed and not off: error fails the run, warning warns")


class RunSummarySerializer(serializers.Serializer):
    """How a finished run ended (empty while it is queued or running)."""

    steps = serializers.DictField(child=serializers.CharField(), required=False, help_text="step -> status")
    failed = serializers.ListField(child=serializers.CharField(), required=False, help_text="steps that failed")
    skipped = serializers.ListField(child=serializers.CharField(), required=False)
    timed_out = serializers.BooleanField(required=False)
    continue_on_failure = serializers.BooleanField(required=False)
    outcome = serializers.CharField(required=False)
    warnings = serializers.ListField(child=serializers.CharField(), required=False)
    gates = GateResultSerializer(many=True, required=False)


class PipelineRunSerializer(serializers.ModelSerializer):
    steps = PipelineStepRunSerializer(source="step_runs", many=True, read_only=True)
    steps_requested = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Empty: every default step"
    )
    options = serializers.DictField(
        read_only=True,
        help_text="the options the request gave its steps (path, market, batch_size, overwrite, ...: each step "
        "reads its own, docs/pipeline.md) and, under ignored_options, the old options it sent that we do not act on",
    )
    summary = RunSummarySerializer(read_only=True)
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)
    outcome = serializers.SerializerMethodField(
        help_text='the status, or "succeeded with warnings" when a warning gate was breached'
    )
    gates = serializers.SerializerMethodField(help_text="the quality gates the validate step checked")

    class Meta:
        model = PipelineRun
        fields = [
            "id",
            "status",
            "trigger",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "steps_requested",
            "options",
            "continue_on_failure",
            "max_seconds",
            "error",
            "outcome",
            "gates",
            "summary",
            "steps",
        ]

    def get_outcome(self, run: PipelineRun) -> str:
        return run_outcome(run)

    @extend_schema_field(GateResultSerializer(many=True))
    def get_gates(self, run: PipelineRun) -> list[dict[str, Any]]:
        return GateResultSerializer(run_gates(run), many=True).data


# ---------------------------------------------------------------------------
# Response shapes (the schema documents every field)


class IndicatorsSerializer(serializers.Serializer):
    candles = serializers.IntegerField()
    candles_without_symbol = serializers.IntegerField()
    symbols_active = serializers.IntegerField()
    symbols_enriched = serializers.IntegerField()
    symbol_coverage = serializers.FloatField(allow_null=True, help_text="percent")
    asset_class_consistency = serializers.FloatField(allow_null=True, help_text="percent")
    enrichment_coverage = serializers.FloatField(allow_null=True, help_text="percent")
    mean_symbol_quality_score = serializers.FloatField(allow_null=True)
    overall_quality = serializers.FloatField(allow_null=True, help_text="0-100")


class HealthCheckSerializer(serializers.Serializer):
    name = serializers.CharField()
    value = serializers.FloatField(allow_null=True)
    goal = serializers.CharField()
    ok = serializers.BooleanField()


class IntegrityStatusSerializer(serializers.Serializer):
    status = serializers.CharField(help_text='"healthy" when every check is ok, else "attention"')
    overall = IndicatorsSerializer()
    checks = HealthCheckSerializer(many=True)
    markets = serializers.DictField(child=IndicatorsSerializer())
    weights = serializers.DictField(child=serializers.FloatField())
    OverallDataQuality = serializers.FloatField(allow_null=True, help_text="old name of overall.overall_quality")
    SymbolCoverage = serializers.FloatField(allow_null=True, help_text="old name of overall.symbol_coverage")
    EnrichmentCoverage = serializers.FloatField(allow_null=True, help_text="old name of overall.enrichment_coverage")
    MarketDataRecordsWithoutSymbols = serializers.IntegerField(help_text="old name of overall.candles_without_symbol")


class UnresolvedPairSerializer(serializers.Serializer):
    """A (ticker, market) of market_data that the sync cannot turn into a symbol, and why."""

    ticker = serializers.CharField()
    market = serializers.CharField()
    candles = serializers.IntegerField()
    reason = serializers.CharField()


class PlannedSymbolSerializer(serializers.Serializer):
    """A symbol the sync creates (a dry run: would create)."""

    ticker = serializers.CharField()
    market = serializers.CharField()
    asset_class = serializers.CharField(allow_null=True)
    base_currency = serializers.CharField(allow_blank=True)
    quote_currency = serializers.CharField(allow_blank=True)
    confidence = serializers.FloatField()
    reason = serializers.CharField(allow_blank=True)
    candles = serializers.IntegerField()


class SyncCountsSerializer(serializers.Serializer):
    """The sync step's counts (what /api/etl/sync-symbols answers in the request)."""

    dry_run = serializers.BooleanField(required=False)
    pairs_found = serializers.IntegerField(required=False)
    symbols_created = serializers.IntegerField(required=False)
    symbols_updated = serializers.IntegerField(required=False)
    candles_linked = serializers.IntegerField(required=False)
    candles_without_symbol = serializers.IntegerField(required=False)
    filtered_out = serializers.IntegerField(required=False)
    unresolved_count = serializers.IntegerField(required=False)
    batches = serializers.IntegerField(required=False)
    timed_out = serializers.BooleanField(required=False)
    duration_seconds = serializers.FloatField(required=False)
    unresolved = UnresolvedPairSerializer(many=True, required=False)


class LastSyncSerializer(serializers.Serializer):
    pipeline_run = serializers.IntegerField()
    status = serializers.CharField()
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_seconds = serializers.FloatField(allow_null=True)
    counts = SyncCountsSerializer()
    error = serializers.CharField(allow_blank=True)


class SourceSymbolsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    active = serializers.IntegerField()
    low_confidence = serializers.IntegerField(help_text="inferred with confidence below 0.85")


class SymbolTotalsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    by_source = serializers.DictField(
        child=SourceSymbolsSerializer(), help_text="source (bootstrap, discovered, manual, sync, ...) -> symbols"
    )


class SymbolSyncStatusSerializer(serializers.Serializer):
    candles_without_symbol = serializers.IntegerField()
    unsynced_pairs = serializers.IntegerField()
    in_sync = serializers.BooleanField()
    symbols = SymbolTotalsSerializer()
    candles_total_estimate = serializers.IntegerField()
    last_sync = LastSyncSerializer(allow_null=True)


class SymbolIssueSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    ticker = serializers.CharField()
    market = serializers.CharField()
    symbol_id = serializers.IntegerField(allow_null=True)
    rows = serializers.IntegerField()
    fixed = serializers.BooleanField()


class SymbolValidationSerializer(serializers.Serializer):
    fix = serializers.BooleanField()
    run_ref = serializers.CharField()
    issues = SymbolIssueSerializer(many=True)
    counts = serializers.DictField(child=serializers.IntegerField())
    fixed = serializers.DictField(child=serializers.IntegerField())
    corrections_recorded = serializers.IntegerField()
    ok = serializers.BooleanField()
    issue_count = serializers.IntegerField()
    ignored_options = serializers.DictField(child=serializers.CharField())


class ScheduleResultSerializer(serializers.Serializer):
    schedule_id = serializers.IntegerField()
    name = serializers.CharField()
    cron = serializers.CharField()
    timezone = serializers.CharField()
    next_run = serializers.DateTimeField()
    created = serializers.BooleanField()
    ignored_options = serializers.DictField(child=serializers.CharField())
