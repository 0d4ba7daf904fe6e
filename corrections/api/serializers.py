"""Request bodies of the correction API. snake_case, and the old system's camelCase
names (batchSize, onlyProcessNullAssetClass, validateAfterEachBatch,
createBackup, correctionId) are accepted too so old clients keep working."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from corrections.models import CorrectionRun
from corrections.services import MAX_BATCH_SIZE

OLD_SYSTEM_NAMES = {
    "batchSize": "batch_size",
    "onlyProcessNullAssetClass": "only_null",
    "overwriteMismatched": "overwrite_mismatched",
    "validateAfterEachBatch": "validate_each_batch",
    "createBackup": "create_backup",
    "correctionId": "run_id",
    "runId": "run_id",
    "pageSize": "page_size",
}


class OldSystemNamesMixin:
    def to_internal_value(self, data: Any) -> Any:
        if hasattr(data, "items"):
            data = {OLD_SYSTEM_NAMES.get(key, key): value for key, value in data.items()}
        return super().to_internal_value(data)


class RunField(serializers.PrimaryKeyRelatedField):
    def __init__(self, **kwargs: Any):
        super().__init__(queryset=CorrectionRun.objects.all(), **kwargs)


class AnalyzeQuerySerializer(serializers.Serializer):
    sample_size = serializers.IntegerField(min_value=0, max_value=100, default=5)


class OptionsSerializer(OldSystemNamesMixin, serializers.Serializer):
    only_null = serializers.BooleanField(default=False)
    overwrite_mismatched = serializers.BooleanField(default=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("only_null") and attrs.get("overwrite_mismatched"):
            raise serializers.ValidationError("only_null and overwrite_mismatched exclude each other: choose one.")
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
    run_async = serializers.BooleanField(default=True)

    def validate_create_backup(self, value: bool) -> bool:
        if not value:
            raise serializers.ValidationError("The backup is mandatory: a correction cannot run without it.")
        return value


class RunSerializer(OldSystemNamesMixin, serializers.Serializer):
    run_id = RunField(required=False, allow_null=True)


class RollbackSerializer(OldSystemNamesMixin, serializers.Serializer):
    run_id = RunField()
    reason = serializers.CharField(max_length=2000)
    force = serializers.BooleanField(default=False, help_text="also restore rows changed after the run")
