"""Request bodies of the batch-processing API, under the request policy
(etl/api/request_policy.py): our snake_case names, the old system's camelCase
ones (`dataPath`, `batchSize`, `stockScrapperDataPath`, `globalSlaTarget`, ...),
and its options we accept without acting on them, listed with the reason."""

from __future__ import annotations

import re

from django.utils.translation import gettext
from rest_framework import serializers

from batchimport.markets import MAX_CONCURRENCY_LIMIT
from etl.api.pipeline_serializers import TimeZoneField
from etl.api.request_policy import PolicySerializer
from etl.api.serializers import ChecksSerializer, HealthSerializer

_DURATION = re.compile(r"^(\d{1,3}):([0-5]\d):([0-5]\d)$")
DUPLICATES_ALWAYS_REFUSED = "duplicates are always refused by the unique key and counted (rows_duplicates)"
CONCURRENCY_HELP = "worker tasks sharing the job's files, never more at once; default: the market's import settings"
GLOBAL_CONCURRENCY_HELP = (
    "worker tasks sharing the whole job's files, never more at once; default: the sum of the markets' "
    "settings (side by side) or the largest (one after another)"
)
BATCH_HELP = "rows per staging batch; default: the market's import settings"
SLA_HELP = '"HH:MM:SS"; default: the market\'s import settings'
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
    batch_size = serializers.IntegerField(required=False, min_value=1, max_value=1_000_000, help_text=BATCH_HELP)
    sla_target = DurationMinutesField(required=False, help_text=SLA_HELP)
    max_concurrency = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_CONCURRENCY_LIMIT, help_text=CONCURRENCY_HELP
    )
    max_attempts = serializers.IntegerField(required=False, min_value=1, max_value=20, default=4)
    overwrite = serializers.BooleanField(required=False, default=False)

    ignored_options = {
        "market": "the path names the market (markets/{market}/import)",
        "enableDuplicateCleanup": DUPLICATES_ALWAYS_REFUSED,
    }


class AllMarketsImportSerializer(PolicySerializer):
    data_path = serializers.CharField(required=False, default=".", help_text="under DATA_ROOT")
    run_markets_in_parallel = serializers.BooleanField(required=False, default=True)
    max_concurrency = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_CONCURRENCY_LIMIT, help_text=GLOBAL_CONCURRENCY_HELP
    )
    sla_target = DurationMinutesField(required=False, help_text='"HH:MM:SS"; default 02:00:00 (the old system\'s)')
    batch_size = serializers.IntegerField(required=False, min_value=1, max_value=1_000_000, help_text=BATCH_HELP)
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
    timezone = TimeZoneField(required=False, default="UTC", help_text="IANA zone")

    old_names = {"cronExpression": "cron", "timeZone": "timezone"}


class StatsQuerySerializer(PolicySerializer):
    start_date = serializers.DateField(required=False, help_text="YYYY-MM-DD, inclusive")
    end_date = serializers.DateField(required=False, help_text="YYYY-MM-DD, inclusive")

    def validate(self, attrs):
        if attrs.get("start_date") and attrs.get("end_date") and attrs["start_date"] > attrs["end_date"]:
            raise serializers.ValidationError({"start_date": gettext("startDate is after endDate")})
        return attrs


# ---------------------------------------------------------------------------
# Response shapes (snake_case; the schema documents every field)


class FilesSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    done = serializers.IntegerField()
    skipped = serializers.IntegerField()
    failed = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField(), help_text="file status -> files")


class RowsSerializer(serializers.Serializer):
    read = serializers.IntegerField()
    inserted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    updated = serializers.IntegerField()
    rejected = serializers.IntegerField()
    changed_kept = serializers.IntegerField(help_text="duplicates whose values differed, kept as stored")


class MarketJobStatusSerializer(serializers.Serializer):
    job_id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=["market", "all_markets"])
    market = serializers.CharField(allow_null=True)
    status = serializers.CharField()
    path = serializers.CharField(help_text="relative to DATA_ROOT")
    attempt = serializers.IntegerField()
    percent = serializers.FloatField(allow_null=True)
    rows_per_second = serializers.FloatField(allow_null=True, help_text="measured so far")
    expected_rows_per_second = serializers.IntegerField(
        allow_null=True, help_text="the market's expected rate when the job was created"
    )
    eta_seconds = serializers.FloatField(allow_null=True)
    eta_basis = serializers.ChoiceField(
        choices=["observed", "expected_rate"],
        allow_null=True,
        help_text="observed: the job's own rate; expected_rate: the market's expected rows/s (before it has one)",
    )
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    sla_minutes = serializers.IntegerField()
    sla_breached = serializers.BooleanField()
    sla_state = serializers.ChoiceField(
        choices=["breached", "at risk", "on track", "met", "not started"],
        help_text="at risk: the ETA ends past the SLA, or a fifth of the SLA is left",
    )
    batch_size = serializers.IntegerField()
    max_concurrency = serializers.IntegerField(help_text="worker tasks sharing the job, never more at once")
    overwrite = serializers.BooleanField()
    requested_by = serializers.CharField(allow_blank=True)
    schedule_name = serializers.CharField(allow_blank=True)
    cancel_requested = serializers.BooleanField()
    error = serializers.CharField(allow_blank=True)
    files = FilesSerializer()
    rows = RowsSerializer()


class JobStatusSerializer(MarketJobStatusSerializer):
    markets = MarketJobStatusSerializer(many=True, required=False, help_text="all-markets jobs: one per market")
    jobId = serializers.IntegerField(help_text="old name of job_id")  # noqa: N815 - the old system's name


class JobAcceptedSerializer(JobStatusSerializer):
    """202: the job, where to read its status, and the old options the request sent that we do not act on."""

    run_id = serializers.IntegerField()
    location = serializers.URLField(help_text="the job's status (also the Location header)")
    ignored_options = serializers.DictField(child=serializers.CharField(), required=False)


class JobPolicySerializer(JobStatusSerializer):
    ignored_options = serializers.DictField(child=serializers.CharField(), required=False)


class StatsRowsSerializer(serializers.Serializer):
    read = serializers.IntegerField()
    inserted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    updated = serializers.IntegerField()
    rejected = serializers.IntegerField()


class StatsMarketSerializer(serializers.Serializer):
    market = serializers.CharField()
    jobs = serializers.IntegerField()
    rows = serializers.IntegerField(allow_null=True)
    breaches = serializers.IntegerField()


class MonitoringStatsSerializer(serializers.Serializer):
    start_date = serializers.DateField(allow_null=True)
    end_date = serializers.DateField(allow_null=True)
    jobs = serializers.IntegerField()
    jobs_by_status = serializers.DictField(child=serializers.IntegerField())
    job_success_rate = serializers.FloatField(allow_null=True, help_text="percent of ended jobs")
    rows = StatsRowsSerializer()
    error_rate_percent = serializers.FloatField(allow_null=True)
    average_rows_per_second = serializers.FloatField(allow_null=True)
    sla_compliance_percent = serializers.FloatField(allow_null=True)
    sla_breaches = serializers.IntegerField()
    by_market = StatsMarketSerializer(many=True)
    ignored_options = serializers.DictField(child=serializers.CharField(), required=False)


class ImportsCheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField(help_text="false while a running job is past its SLA")
    running_jobs = serializers.IntegerField()
    queued_files = serializers.IntegerField()
    running_files = serializers.IntegerField()
    sla_breaches_running = serializers.IntegerField()
    open_dead_letters = serializers.IntegerField()
    checked_at = serializers.DateTimeField()


class ImportRequestStoredSerializer(serializers.Serializer):
    """The import request a schedule keeps, under our names; what it left out is not
    stored and comes from the markets' import settings when it fires."""

    market = serializers.CharField(required=False)
    batch_size = serializers.IntegerField(required=False)
    max_concurrency = serializers.IntegerField(required=False)
    max_attempts = serializers.IntegerField(required=False)
    sla_minutes = serializers.IntegerField(required=False, help_text="the request's sla_target / globalSlaTarget")
    overwrite = serializers.BooleanField(required=False)
    run_in_parallel = serializers.BooleanField(required=False)
    ignored_options = serializers.DictField(child=serializers.CharField(), required=False)


class ScheduleBodySerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="the recurring job id: DELETE schedules/{id}")
    name = serializers.CharField()
    cron = serializers.CharField()
    timezone = serializers.CharField()
    next_run = serializers.DateTimeField(allow_null=True)
    path = serializers.CharField()
    import_request = ImportRequestStoredSerializer()
    ignored_options = serializers.DictField(child=serializers.CharField(), required=False)


class BatchChecksSerializer(ChecksSerializer):
    imports = ImportsCheckSerializer(required=False)


class BatchHealthSerializer(HealthSerializer):
    checks = BatchChecksSerializer()
