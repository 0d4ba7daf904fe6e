"""Request and response shapes of the sync, status and pipeline endpoints.

Requests accept snake_case and the old system's camelCase names
(`batchSize`, `continueOnComponentFailure`, `maxExecutionTime`, ...)."""

from __future__ import annotations

import re
from typing import Any

from rest_framework import serializers

from etl.models import PipelineRun, PipelineStepRun


def snake_case_keys(data: Any) -> dict[str, Any]:
    if not hasattr(data, "items"):
        return data
    return {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): v for k, v in data.items()}


# The longest time limit a pipeline run may ask for (the old guides plan 2-4 h runs).
MAX_RUN_SECONDS = 7 * 24 * 3600


class SyncSymbolsRequestSerializer(serializers.Serializer):
    batch_size = serializers.IntegerField(default=1000, min_value=1, max_value=1_000_000)
    asset_class_filter = serializers.ListField(child=serializers.CharField(max_length=32), required=False)
    venue_filter = serializers.ListField(child=serializers.CharField(max_length=32), required=False)
    skip_existing_symbols = serializers.BooleanField(default=True)
    max_processing_time = serializers.DurationField(required=False, help_text='"HH:MM:SS"')
    dry_run = serializers.BooleanField(default=False, help_text="List what would be created; write nothing")
    run_async = serializers.BooleanField(default=False, help_text="Queue it on the workers and return 202")

    def service_kwargs(self) -> dict[str, Any]:
        d = self.validated_data
        limit = d.get("max_processing_time")
        if limit is not None and limit.total_seconds() <= 0:
            raise serializers.ValidationError({"max_processing_time": "must be positive"})
        return {
            "batch_size": d["batch_size"],
            "asset_classes": d.get("asset_class_filter") or None,
            "venues": d.get("venue_filter") or None,
            "skip_existing": d["skip_existing_symbols"],
            "max_seconds": limit.total_seconds() if limit is not None else None,
            "dry_run": d["dry_run"],
        }


class PipelineRequestSerializer(serializers.Serializer):
    steps = serializers.ListField(
        child=serializers.CharField(max_length=40), required=False, help_text="Default: every default step"
    )
    continue_on_failure = serializers.BooleanField(required=False)
    continue_on_component_failure = serializers.BooleanField(
        required=False, help_text="The old system's name for continue_on_failure"
    )
    max_execution_time = serializers.DurationField(required=False, help_text='"HH:MM:SS"')
    max_minutes = serializers.FloatField(required=False, min_value=0.01, max_value=MAX_RUN_SECONDS / 60)
    path = serializers.CharField(required=False, help_text="Import step: file or folder under the data root")
    options = serializers.DictField(required=False, help_text="Step options, e.g. batch_size, clean_symbols")
    run_async = serializers.BooleanField(default=False, help_text="Queue on the workers and return 202")
    # The old system's switches; applied to the default steps when `steps` is not given.
    execute_reference_data_bootstrap = serializers.BooleanField(required=False)
    execute_symbol_sync = serializers.BooleanField(required=False)
    execute_asset_enrichment = serializers.BooleanField(required=False)
    validate_after_execution = serializers.BooleanField(required=False)

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
            raise serializers.ValidationError({"steps": "no step left to run"})
        limit = d.get("max_execution_time")
        max_seconds = round(limit.total_seconds()) if limit is not None else None
        if "max_minutes" in d:
            max_seconds = round(d["max_minutes"] * 60)
        if max_seconds is not None and max_seconds <= 0:
            raise serializers.ValidationError({"max_execution_time": "must be positive"})
        if max_seconds is not None and max_seconds > MAX_RUN_SECONDS:
            raise serializers.ValidationError({"max_execution_time": f"at most {MAX_RUN_SECONDS} s (7 days)"})
        options = dict(d.get("options") or {})
        if d.get("path"):
            options["path"] = d["path"]
        return {
            "steps": steps,
            "options": options,
            "continue_on_failure": d.get("continue_on_failure", d.get("continue_on_component_failure", False)),
            "max_seconds": max_seconds,
        }


class ValidateCleanupRequestSerializer(serializers.Serializer):
    fix = serializers.BooleanField(default=False, help_text="Repair and record each fix; default: report only")
    fixes = serializers.ListField(child=serializers.CharField(), required=False, help_text="Issue kinds to repair")


class ScheduleRequestSerializer(serializers.Serializer):
    cron = serializers.CharField(max_length=100, help_text='e.g. "0 2 * * *"')
    timezone = serializers.CharField(max_length=64, default="UTC", help_text="IANA zone, e.g. Europe/Istanbul")
    name = serializers.CharField(max_length=100, required=False, default="")
    steps = serializers.ListField(child=serializers.CharField(max_length=40), required=False)
    continue_on_failure = serializers.BooleanField(default=True)
    max_minutes = serializers.FloatField(required=False, min_value=0.01)
    options = serializers.DictField(required=False)


class PipelineStepRunSerializer(serializers.ModelSerializer):
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = PipelineStepRun
        fields = ["name", "order", "status", "started_at", "finished_at", "duration_seconds", "counts", "error"]


class PipelineRunSerializer(serializers.ModelSerializer):
    steps = PipelineStepRunSerializer(source="step_runs", many=True, read_only=True)
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)

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
            "summary",
            "steps",
        ]
