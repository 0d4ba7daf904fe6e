"""Request bodies with the old system's names (camelCase), validated."""

from __future__ import annotations

import re

from rest_framework import serializers

from etl.api.serializers import DeadLetterSerializer  # noqa: F401 (re-exported for the views)

_DURATION = re.compile(r"^(\d{1,3}):([0-5]\d):([0-5]\d)$")


class DurationMinutesField(serializers.CharField):
    """`"00:45:00"` -> 45 (minutes, rounded up)."""

    def to_internal_value(self, data):
        text = super().to_internal_value(data)
        match = _DURATION.match(text.strip())
        if not match:
            raise serializers.ValidationError("use hh:mm:ss, e.g. 00:45:00")
        h, m, s = (int(x) for x in match.groups())
        minutes = h * 60 + m + (1 if s else 0)
        if minutes < 1:
            raise serializers.ValidationError("must be at least one minute")
        return minutes


class MarketImportSerializer(serializers.Serializer):
    dataPath = serializers.CharField(required=False, help_text="Folder or file under DATA_ROOT; default: the market")
    batchSize = serializers.IntegerField(required=False, min_value=1, max_value=1_000_000)
    slaTarget = DurationMinutesField(required=False)
    maxConcurrency = serializers.IntegerField(required=False, min_value=1, max_value=32, default=2)
    maxAttempts = serializers.IntegerField(required=False, min_value=1, max_value=20, default=4)
    overwrite = serializers.BooleanField(required=False, default=False)
    enableDuplicateCleanup = serializers.BooleanField(
        required=False, default=True, help_text="Accepted for compatibility: duplicates are always rejected"
    )


class AllMarketsImportSerializer(serializers.Serializer):
    stockScrapperDataPath = serializers.CharField(required=False, default=".")
    runMarketsInParallel = serializers.BooleanField(required=False, default=True)
    globalMaxConcurrency = serializers.IntegerField(required=False, min_value=1, max_value=32, default=2)
    globalSlaTarget = DurationMinutesField(required=False)
    batchSize = serializers.IntegerField(required=False, min_value=1, max_value=1_000_000)
    overwrite = serializers.BooleanField(required=False, default=False)


class RetrySerializer(serializers.Serializer):
    maxRetries = serializers.IntegerField(required=False, min_value=1, max_value=20)
    initialDelay = serializers.CharField(required=False, help_text="Accepted; the backoff is 1, 2, 4 … min")
    backoffMultiplier = serializers.FloatField(required=False)


class ScheduleSerializer(serializers.Serializer):
    name = serializers.SlugField(required=False, default="all-markets-daily")
    importRequest = AllMarketsImportSerializer(required=False, default=dict)
    cronExpression = serializers.CharField()
    timeZone = serializers.CharField(required=False, default="UTC")
