"""Request bodies of the batch-processing API, under the request policy
(etl/api/request_policy.py): our snake_case names, the old system's camelCase
ones (`dataPath`, `batchSize`, `stockScrapperDataPath`, `globalSlaTarget`, ...),
and its options we accept without acting on them, listed with the reason."""

from __future__ import annotations

import re

from django.utils.translation import gettext
from rest_framework import serializers

from etl.api.request_policy import PolicySerializer

_DURATION = re.compile(r"^(\d{1,3}):([0-5]\d):([0-5]\d)$")
DUPLICATES_ALWAYS_REFUSED = "duplicates are always refused by the unique key and counted (rows_duplicates)"
FIXED_BACKOFF = "the backoff is fixed: 1, 2, 4 ... minutes up to 30 (the old guide's own table)"


class DurationMinutesField(serializers.CharField):
    """`"00:45:00"` -> 45 (minutes, rounded up); 1 minute to 999 hours."""

    def to_internal_value(self, data):
        text = super().to_internal_value(data)
        match = _DURATION.match(text.strip())
        if not match:
            raise serializers.ValidationError(gettext("use hh:mm:ss, e.g. 00:45:00"))
        h, m, s = (int(x) for x in match.groups())
        minutes = h * 60 + m + (1 if s else 0)
        if minutes < 1:
            raise serializers.ValidationError(gettext("must be at least one minute"))
        return minutes


class MarketImportSerializer(PolicySerializer):
    # Its length is checked once, by path_resolve against IMPORT_MAX_PATH_LENGTH (and the file system's limits).
    data_path = serializers.CharField(required=False, help_text="Folder or file under DATA_ROOT; default: the market")
    batch_size = serializers.IntegerField(required=False, min_value=1, max_value=1_000_000)
    sla_target = DurationMinutesField(required=False, help_text='"HH:MM:SS"')
    max_concurrency = serializers.IntegerField(required=False, min_value=1, max_value=32, default=2)
    max_attempts = serializers.IntegerField(required=False, min_value=1, max_value=20, default=4)
    overwrite = serializers.BooleanField(required=False, default=False)

    ignored_options = {
        "market": "the path names the market (markets/{market}/import)",
        "enableDuplicateCleanup": DUPLICATES_ALWAYS_REFUSED,
    }


class AllMarketsImportSerializer(PolicySerializer):
    data_path = serializers.CharField(required=False, default=".", help_text="under DATA_ROOT")
    run_markets_in_parallel = serializers.BooleanField(required=False, default=True)
    max_concurrency = serializers.IntegerField(required=False, min_value=1, max_value=32, default=2)
    sla_target = DurationMinutesField(required=False, help_text='"HH:MM:SS"')
    batch_size = serializers.IntegerField(required=False, min_value=1, max_value=1_000_000)
    overwrite = serializers.BooleanField(required=False, default=False)

    old_names = {
        "stockScrapperDataPath": "data_path",
        "globalMaxConcurrency": "max_concurrency",
        "globalSlaTarget": "sla_target",
    }
    ignored_options = {"enableDuplicateCleanup": DUPLICATES_ALWAYS_REFUSED}


class RetrySerializer(PolicySerializer):
    max_attempts = serializers.IntegerField(required=False, min_value=1, max_value=20)

    old_names = {"maxRetries": "max_attempts"}
    ignored_options = {"initialDelay": FIXED_BACKOFF, "backoffMultiplier": FIXED_BACKOFF}


class ScheduleSerializer(PolicySerializer):
    name = serializers.SlugField(required=False, default="all-markets-daily", max_length=100)
    import_request = AllMarketsImportSerializer(required=False)
    cron = serializers.CharField(max_length=100, help_text='e.g. "0 2 * * *"')
    timezone = serializers.CharField(required=False, default="UTC", max_length=64, help_text="IANA zone")

    old_names = {"cronExpression": "cron", "timeZone": "timezone"}


class StatsQuerySerializer(PolicySerializer):
    start_date = serializers.DateField(required=False, help_text="YYYY-MM-DD, inclusive")
    end_date = serializers.DateField(required=False, help_text="YYYY-MM-DD, inclusive")

    def validate(self, attrs):
        if attrs.get("start_date") and attrs.get("end_date") and attrs["start_date"] > attrs["end_date"]:
            raise serializers.ValidationError({"start_date": gettext("startDate is after endDate")})
        return attrs
