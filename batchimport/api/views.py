"""The batch-processing API (the old system's paths) and the import jobs as a
resource (/api/runs/import-jobs/). Views parse with the request policy, call one
service, render. Responses are snake_case, with the old `jobId` kept as a copy."""

from __future__ import annotations

import re
from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from batchimport import selectors, services
from batchimport.api import serializers as s
from batchimport.markets import MARKET_KEYS, market_spec
from batchimport.models import ImportJob
from etl.api.pagination import ApiPagination
from etl.api.permissions import StaffWithPermission
from etl.api.request_policy import PolicyViewMixin, old_names_add, snake_name
from etl.api.runs import RunListQuery, RunViewSet, accepted
from etl.api.serializers import DeadLetterSerializer, ErrorSerializer
from etl.health import health_report
from etl.models import DeadLetter

JOB_STATUS = "import-job-status"
_CAMEL = re.compile(r"[a-z0-9][A-Z]")


def snake_keys(data: Any) -> Any:
    """The selectors' camelCase keys (`rowsPerSecond`) in the API's snake_case;
    keys that are data (`BIST`, `queued`) stay as they are."""
    if isinstance(data, dict):
        return {
            (snake_name(k) if isinstance(k, str) and _CAMEL.search(k) else k): snake_keys(v) for k, v in data.items()
        }
    if isinstance(data, list):
        return [snake_keys(v) for v in data]
    return data


def job_body(job: ImportJob) -> dict[str, Any]:
    """A job's status, snake_case, with the old `jobId` the guide's scripts read."""
    return old_names_add(snake_keys(selectors.job_status(job=job)), {"jobId": "job_id"})


def _user(request) -> str:
    return request.user.get_username()


def _accepted(request, job: ImportJob) -> Response:
    return accepted(request, job_body(job), url_name=JOB_STATUS, run_id=job.pk)


class MarketImportView(PolicyViewMixin, APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("batchimport.start_import",)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "market",
                str,
                OpenApiParameter.PATH,
                enum=list(MARKET_KEYS),
                description="the market's key (or its folder name, in any case: BIST, Crypto, NASDAQ, NYSE)",
            )
        ],
        request=s.MarketImportSerializer,
        responses={202: s.JobAcceptedSerializer, 400: ErrorSerializer, 409: ErrorSerializer},
    )
    def post(self, request, market: str):
        """POST markets/{market}/import -> services.import_job_submit (queued on commit)."""
        key = services.market_key_parse(market)
        d = self.policy_body(s.MarketImportSerializer).validated_data
        job = services.import_job_submit(
            path=d.get("data_path") or market_spec(key).folder,
            market=key,
            batch_size=d.get("batch_size"),
            sla_minutes=d.get("sla_target"),
            max_concurrency=d.get("max_concurrency"),
            max_attempts=d["max_attempts"],
            overwrite=d["overwrite"],
            requested_by=_user(request),
        )
        return _accepted(request, job)


class AllMarketsImportView(PolicyViewMixin, APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("batchimport.start_import",)

    @extend_schema(
        request=s.AllMarketsImportSerializer,
        responses={202: s.JobAcceptedSerializer, 400: ErrorSerializer, 409: ErrorSerializer},
    )
    def post(self, request):
        """POST all-markets/import -> services.import_job_submit (queued on commit)."""
        d = self.policy_body(s.AllMarketsImportSerializer).validated_data
        job = services.import_job_submit(
            path=d["data_path"],
            all_markets=True,
            run_in_parallel=d["run_markets_in_parallel"],
            max_concurrency=d.get("max_concurrency"),
            sla_minutes=d.get("sla_target"),
            batch_size=d.get("batch_size"),
            overwrite=d["overwrite"],
            requested_by=_user(request),
        )
        return _accepted(request, job)


def _job(job_id: int) -> ImportJob:
    return get_object_or_404(ImportJob, pk=job_id)


class JobStatusView(APIView):
    @extend_schema(responses={200: s.JobStatusSerializer, 404: ErrorSerializer})
    def get(self, request, job_id: int):
        """GET jobs/{id}/status -> selectors.job_status."""
        return Response(job_body(_job(job_id)))


class JobCancelView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("batchimport.cancel_import",)

    @extend_schema(request=None, responses={200: s.JobStatusSerializer, 404: ErrorSerializer, 409: ErrorSerializer})
    def post(self, request, job_id: int):
        """POST jobs/{id}/cancel -> services.import_job_cancel."""
        return Response(job_body(services.import_job_cancel(job=_job(job_id))))


def _retry(request, job: ImportJob, max_attempts: int | None) -> Response:
    job = services.import_job_retry(job=job, max_attempts=max_attempts, workers=job.max_concurrency, queue=True)
    return _accepted(request, job)


class JobRetryView(PolicyViewMixin, APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("batchimport.retry_import",)

    @extend_schema(
        request=s.RetrySerializer,
        responses={202: s.JobAcceptedSerializer, 400: ErrorSerializer, 404: ErrorSerializer, 409: ErrorSerializer},
    )
    def post(self, request, job_id: int):
        """POST jobs/{id}/retry -> services.import_job_retry (queued on commit)."""
        body = self.policy_body(s.RetrySerializer)
        return _retry(request, _job(job_id), body.validated_data.get("max_attempts"))


class MonitoringStatsView(PolicyViewMixin, APIView):
    @extend_schema(
        parameters=[s.StatsQuerySerializer], responses={200: s.MonitoringStatsSerializer, 400: ErrorSerializer}
    )
    def get(self, request):
        """GET monitoring/stats?startDate=&endDate= -> selectors.monitoring_stats."""
        d = self.policy_query(s.StatsQuerySerializer).validated_data
        return Response(snake_keys(selectors.monitoring_stats(start=d.get("start_date"), end=d.get("end_date"))))


class DeadLetterQueueView(generics.ListAPIView):
    """Import files that failed for good, newest first (ApiPagination: page and pageSize as the old system)."""

    serializer_class = DeadLetterSerializer
    pagination_class = ApiPagination
    filter_backends: list = []
    queryset = DeadLetter.objects.filter(kind="import_file")


class DeadLetterResubmitView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("batchimport.retry_import",)

    @extend_schema(
        request=None,
        responses={202: s.JobAcceptedSerializer, 400: ErrorSerializer, 404: ErrorSerializer, 409: ErrorSerializer},
    )
    def post(self, request, letter_id: int):
        """POST dead-letter-queue/{id}/resubmit -> services.dead_letter_resubmit (queued on commit)."""
        letter = get_object_or_404(DeadLetter, pk=letter_id)
        return _accepted(request, services.dead_letter_resubmit(dead_letter=letter))


class HealthView(APIView):
    """The shared health (etl.health) plus the imports' own: degraded while a
    running job is past its SLA; 503 when the database or broker is down."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(responses={200: s.BatchHealthSerializer, 503: s.BatchHealthSerializer})
    def get(self, request):
        """GET health -> etl.health.health_report with selectors.health (no authentication)."""
        report = health_report(extra=lambda: {"imports": self.imports_check(snake_keys(selectors.health()))})
        return Response(report.to_dict(), status=report.http_status)

    @staticmethod
    def imports_check(imports: dict) -> dict:
        return {"ok": imports["status"] == "healthy", **{k: v for k, v in imports.items() if k != "status"}}


def schedule_body(schedule) -> dict[str, Any]:
    """An import schedule as the API shows it: what it runs, with every stored field of its import request."""
    stored = services.import_schedule_request(schedule)
    return {
        "id": schedule.pk,
        "name": schedule.name,
        "cron": schedule.cron,
        "timezone": stored["tz"],
        "next_run": schedule.next_run,
        "path": stored["path"],
        "import_request": stored["options"],
    }


class AllMarketsScheduleView(PolicyViewMixin, APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("batchimport.schedule_import",)

    @extend_schema(request=s.ScheduleSerializer, responses={201: s.ScheduleBodySerializer, 400: ErrorSerializer})
    def post(self, request):
        """POST schedules/all-markets -> services.import_schedule_create (every field of importRequest kept)."""
        d = self.policy_body(s.ScheduleSerializer).validated_data
        req = d.get("import_request") or {}
        options = {
            "run_in_parallel": req.get("run_markets_in_parallel"),
            "max_concurrency": req.get("max_concurrency"),
            "batch_size": req.get("batch_size"),
            "sla_minutes": req.get("sla_target"),
            "overwrite": req.get("overwrite"),
            "ignored_options": self.ignored_options or None,
        }
        schedule = services.import_schedule_create(
            name=d["name"], path=req.get("data_path", "."), cron=d["cron"], tz=d["timezone"], options=options
        )
        return Response(schedule_body(schedule), status=status.HTTP_201_CREATED)


class ScheduleView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("batchimport.schedule_import",)

    @extend_schema(responses={200: s.ScheduleBodySerializer, 404: ErrorSerializer})
    def get(self, request, schedule_id: int):
        """GET schedules/{id} -> services.import_schedule_get: what the schedule runs."""
        return Response(schedule_body(services.import_schedule_get(schedule_id=schedule_id)))

    @extend_schema(responses={204: None, 404: ErrorSerializer})
    def delete(self, request, schedule_id: int):
        """DELETE schedules/{id} -> services.import_schedule_delete."""
        services.import_schedule_delete(schedule_id=schedule_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(
        parameters=[RunListQuery],
        responses={200: s.JobStatusSerializer(many=True)},
        operation_id="runs_import_jobs_list",
    ),
    retrieve=extend_schema(responses={200: s.JobStatusSerializer, 404: ErrorSerializer}),
)
class ImportJobViewSet(RunViewSet):
    """Import jobs (top-level: an all-markets job lists its markets): `kind` is market or all_markets."""

    queryset = ImportJob.objects.filter(parent__isnull=True)
    kind_field = "kind"
    action_perms = {"cancel": ("batchimport.cancel_import",), "retry": ("batchimport.retry_import",)}

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response([job_body(job) for job in page])

    def retrieve(self, request, *args, **kwargs):
        return Response(job_body(self.get_object()))

    @extend_schema(request=None, responses={200: s.JobStatusSerializer, 404: ErrorSerializer, 409: ErrorSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """services.import_job_cancel, as the admin's action."""
        return Response(job_body(services.import_job_cancel(job=self.get_object())))

    @extend_schema(
        request=s.RetrySerializer,
        responses={202: s.JobAcceptedSerializer, 400: ErrorSerializer, 404: ErrorSerializer, 409: ErrorSerializer},
    )
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """services.import_job_retry (queued on commit)."""
        body = self.policy_body(s.RetrySerializer)
        return _retry(request, self.get_object(), body.validated_data.get("max_attempts"))
