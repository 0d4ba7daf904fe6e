"""Request and response shapes of the correction API. Requests follow the
request policy (etl/api/request_policy.py): snake_case, the old system's
camelCase, and its own names (onlyProcessNullAssetClass, validateAfterEachBatch,
correctionId); a run id as 12, "12" or "correction:12"."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext
from rest_framework import serializers

from corrections.models import CorrectionRun
from corrections.services import MAX_BATCH_SIZE
from etl.api.request_policy import PolicySerializer, RelatedIdField
from etl.api.serializers import CheckSerializer, ChecksSerializer, HealthSerializer

# The old system's names that are not ours in camelCase.
OLD_NAMES = {
    "onlyProcessNullAssetClass": "only_null",
    "validateAfterEachBatch": "validate_each_batch",
    "correctionId": "run_id",
}
RUN_ASYNC_HELP = "Default true: queue it and answer 202 with the run; false runs it in the request"


class RunField(RelatedIdField):
    def __init__(self, **kwargs: Any):
        super().__init__(queryset=CorrectionRun.objects.all(), prefixes=("correction",), **kwargs)


class AnalyzeQuerySerializer(PolicySerializer):
    sample_size = serializers.IntegerField(min_value=0, max_value=100, default=5)


class OptionsSerializer(PolicySerializer):
    old_names = OLD_NAMES

    only_null = serializers.BooleanField(default=False)
    overwrite_mismatched = serializers.BooleanField(default=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("only_null") and attrs.get("overwrite_mismatched"):
            raise serializers.ValidationError(
                gettext("only_null and overwrite_mismatched exclude each other: choose one.")
            )
        return attrs


class PreviewSerializer(OptionsSerializer):
    run_id = RunField(required=False, allow_null=True, help_text="preview this run's options (and record it)")
    page = serializers.IntegerField(min_value=1, max_value=1_000_000, default=1)
    page_size = serializers.IntegerField(min_value=1, max_value=1000, default=50)


class ExecuteSerializer(OptionsSerializer):
    run_id = RunField(required=False, allow_null=True, help_text="execute (or resume) this run; else a new one")
    batch_size = serializers.IntegerField(min_value=1, max_value=MAX_BATCH_SIZE, default=50_000)
    validate_each_batch = serializers.BooleanField(default=False)
    create_backup = serializers.BooleanField(default=True, help_text="always true: the backup is mandatory")
    run_async = serializers.BooleanField(default=True, help_text=RUN_ASYNC_HELP)

    def validate_create_backup(self, value: bool) -> bool:
        if not value:
            raise serializers.ValidationError(gettext("The backup is mandatory: a correction cannot run without it."))
        return value


class RunSerializer(PolicySerializer):
    old_names = OLD_NAMES

    run_id = RunField(required=False, allow_null=True)


class RollbackSerializer(PolicySerializer):
    old_names = OLD_NAMES

    run_id = RunField()
    reason = serializers.CharField(max_length=2000)
    force = serializers.BooleanField(default=False, help_text="also restore rows changed after the run")
    run_async = serializers.BooleanField(default=True, help_text=RUN_ASYNC_HELP)


class RunRollbackSerializer(PolicySerializer):
    """Body of a run's rollback action (the run is in the path)."""

    reason = serializers.CharField(max_length=2000)
    force = serializers.BooleanField(default=False, help_text="also restore rows changed after the run")


# ---------------------------------------------------------------------------
# Response shapes


class CorrectionStatusSerializer(serializers.Serializer):
    """A correction run as the API shows it (selectors.correction_status)."""

    run_id = serializers.IntegerField()
    interrupted = serializers.BooleanField(help_text="marked running, but its process is gone: execute resumes it")
    phase = serializers.CharField()
    status = serializers.CharField()
    scope = serializers.CharField()
    only_null = serializers.BooleanField()
    overwrite_mismatched = serializers.BooleanField()
    batch_size = serializers.IntegerField()
    validate_each_batch = serializers.BooleanField()
    requested_by = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    executed_at = serializers.DateTimeField(allow_null=True)
    progress_done = serializers.IntegerField()
    progress_total = serializers.IntegerField(allow_null=True)
    percent = serializers.FloatField(allow_null=True)
    rate_per_second = serializers.FloatField(allow_null=True)
    eta_seconds = serializers.FloatField(allow_null=True)
    batches_done = serializers.IntegerField()
    last_id = serializers.IntegerField(allow_null=True)
    id_range = serializers.ListField(child=serializers.IntegerField(allow_null=True), min_length=2, max_length=2)
    rows_updated = serializers.IntegerField()
    rows_restored = serializers.IntegerField()
    rollback_conflicts = serializers.IntegerField()
    rollback_reason = serializers.CharField(allow_blank=True)
    rolled_back_by = serializers.CharField(allow_blank=True)
    rolled_back_at = serializers.DateTimeField(allow_null=True)
    cancel_requested = serializers.BooleanField()
    error = serializers.CharField(allow_blank=True)
    ignored_options = serializers.DictField(
        child=serializers.CharField(), required=False, help_text="what the run's request sent that we do not act on"
    )


class CorrectionAcceptedSerializer(CorrectionStatusSerializer):
    location = serializers.URLField(help_text="the run's status (also the Location header)")


class ExecuteResultSerializer(serializers.Serializer):
    run_id = serializers.IntegerField()
    status = serializers.CharField()
    phase = serializers.CharField()
    resumed = serializers.BooleanField()
    rows_updated = serializers.IntegerField()
    rows_backed_up = serializers.IntegerField()
    batches = serializers.IntegerField()
    seconds = serializers.FloatField()
    rate_per_second = serializers.FloatField()
    ignored_options = serializers.DictField(child=serializers.CharField())


class ConflictSampleSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="market_data id")
    ticker = serializers.CharField()
    market = serializers.CharField()
    old_value = serializers.CharField(allow_null=True, help_text="the asset class before the run")
    new_value = serializers.CharField(allow_null=True, help_text="what the run wrote")
    current_value = serializers.CharField(allow_null=True, help_text="what the candle holds now")


class RollbackResultSerializer(serializers.Serializer):
    run_id = serializers.IntegerField()
    status = serializers.CharField()
    phase = serializers.CharField()
    rows_restored = serializers.IntegerField()
    conflicts = serializers.IntegerField()
    conflicts_restored = serializers.IntegerField()
    missing = serializers.IntegerField()
    conflict_samples = ConflictSampleSerializer(many=True, help_text="candles changed again since the run")
    seconds = serializers.FloatField()
    ignored_options = serializers.DictField(child=serializers.CharField())


class CategoryCountsSerializer(serializers.Serializer):
    """Candles by the state of their asset class (every candle is in exactly one category)."""

    total = serializers.IntegerField()
    null = serializers.IntegerField(help_text="asset class null, the symbol's known")
    empty = serializers.IntegerField(help_text="asset class empty")
    mismatched = serializers.IntegerField(help_text="asset class differs from the symbol's")
    correct = serializers.IntegerField()
    orphan = serializers.IntegerField(help_text="no symbol: cannot be checked")
    unclassified = serializers.IntegerField(help_text="the symbol has no asset class")


class TotalsSerializer(CategoryCountsSerializer):
    needing_correction = serializers.IntegerField(help_text="null + empty + mismatched")


class MarketCountsSerializer(CategoryCountsSerializer):
    market = serializers.CharField()


class AssetClassCountsSerializer(CategoryCountsSerializer):
    asset_class = serializers.CharField(allow_null=True, help_text="as stored on the candles")


class ExpectedClassCountsSerializer(CategoryCountsSerializer):
    expected_class = serializers.CharField(allow_null=True, help_text="the symbol's asset class")


class SampleCandleSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    ticker = serializers.CharField()
    market = serializers.CharField()
    timeframe = serializers.CharField()
    ts = serializers.DateTimeField()
    asset_class = serializers.CharField(allow_null=True)
    expected = serializers.CharField(allow_null=True, help_text="the symbol's asset class")


class SamplesSerializer(serializers.Serializer):
    """A few candles of each category needing attention (none when sample_size is 0)."""

    orphan = SampleCandleSerializer(many=True, required=False)
    unclassified = SampleCandleSerializer(many=True, required=False)
    null = SampleCandleSerializer(many=True, required=False)
    empty = SampleCandleSerializer(many=True, required=False)
    mismatched = SampleCandleSerializer(many=True, required=False)


class AnalyzeSerializer(serializers.Serializer):
    totals = TotalsSerializer()
    orphan_percent = serializers.FloatField()
    quality_score = serializers.FloatField(help_text="percent of candles whose asset class is known to be right")
    warnings = serializers.ListField(child=serializers.CharField())
    by_market = MarketCountsSerializer(many=True)
    by_asset_class = AssetClassCountsSerializer(many=True)
    by_expected_class = ExpectedClassCountsSerializer(many=True)
    samples = SamplesSerializer()
    ignored_options = serializers.DictField(child=serializers.CharField(), required=False)


class TransitionSerializer(serializers.Serializer):
    from_value = serializers.CharField(allow_null=True)
    to_value = serializers.CharField()
    groups = serializers.IntegerField()
    rows = serializers.IntegerField()


class ChangeGroupSerializer(serializers.Serializer):
    ticker = serializers.CharField()
    market = serializers.CharField()
    from_value = serializers.CharField(allow_null=True)
    to_value = serializers.CharField()
    row_count = serializers.IntegerField()


class PreviewPageSerializer(serializers.Serializer):
    run_id = serializers.IntegerField(allow_null=True, help_text="the run previewed, or null for a scope")
    scope = serializers.CharField()
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    pages = serializers.IntegerField()
    total_groups = serializers.IntegerField()
    total_rows = serializers.IntegerField()
    transitions = TransitionSerializer(many=True)
    groups = ChangeGroupSerializer(many=True, help_text="one page of (ticker, market, from -> to) groups")
    ignored_options = serializers.DictField(child=serializers.CharField(), required=False)


class ValidationCheckSerializer(serializers.Serializer):
    name = serializers.CharField()
    ok = serializers.BooleanField()
    detail = serializers.CharField(allow_blank=True)


class ValidationResultSerializer(serializers.Serializer):
    run_id = serializers.IntegerField()
    ok = serializers.BooleanField()
    checks = ValidationCheckSerializer(many=True)
    warnings = serializers.ListField(child=serializers.CharField())
    quality_score = serializers.FloatField()
    needing_correction = serializers.IntegerField()
    ignored_options = serializers.DictField(child=serializers.CharField(), required=False)


class MetricsSerializer(serializers.Serializer):
    runs_by_phase = serializers.DictField(child=serializers.IntegerField(), help_text="phase -> runs")
    runs_by_status = serializers.DictField(child=serializers.IntegerField(), help_text="status -> runs")
    rows_updated_total = serializers.IntegerField()
    rows_restored_total = serializers.IntegerField()
    avg_duration_seconds = serializers.FloatField(allow_null=True)
    best_rate_per_second = serializers.FloatField(allow_null=True)
    latest_run = CorrectionStatusSerializer(allow_null=True)
    data_quality_score = serializers.FloatField()
    records_needing_correction = serializers.IntegerField()
    orphan_percent = serializers.FloatField()
    candles = serializers.IntegerField()


class InterruptedRunsCheckSerializer(CheckSerializer):
    runs = serializers.ListField(child=serializers.IntegerField(), help_text="runs whose process is gone")


class LastRunCheckSerializer(CheckSerializer):
    run_id = serializers.IntegerField(allow_null=True)
    phase = serializers.CharField(allow_null=True)
    status = serializers.CharField(allow_null=True)


class RunningNowCheckSerializer(CheckSerializer):
    value = serializers.BooleanField(help_text="a correction holds the lock right now")


class CorrectionChecksSerializer(ChecksSerializer):
    interrupted_runs = InterruptedRunsCheckSerializer(required=False)
    last_run = LastRunCheckSerializer(required=False)
    running_now = RunningNowCheckSerializer(required=False)


class CorrectionHealthSerializer(HealthSerializer):
    checks = CorrectionChecksSerializer()
