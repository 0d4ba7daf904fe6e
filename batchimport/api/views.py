"""The batch-processing API (the old system's paths). Views parse, call one service, render."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework import serializers as drf
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from batchimport import selectors, services
from batchimport.api import serializers as s
from batchimport.markets import market_spec
from batchimport.models import ImportJob
from etl.api.permissions import StaffWithPermission
from etl.errors import DomainError
from etl.health import health_report
from etl.models import DeadLetter


def _user(request) -> str:
    return request.user.get_username()


def _accepted(job) -> Response:
    return Response(selectors.job_status(job=job), status=status.HTTP_202_ACCEPTED)


class MarketImportView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("batchimport.start_import",)

    @extend_schema(request=s.MarketImportSerializer, responses={202: dict})
    def post(self, request, market: str):
        """POST markets/{market}/import -> services.import_job_submit (queued on commit)."""
        key = services.market_key_parse(market)
        body = s.MarketImportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        d = body.validated_data
        job = services.import_job_submit(
            path=d.get("dataPath") or market_spec(key).folder,
            market=key,
            batch_size=d.get("batchSize"),
            sla_minutes=d.get("slaTarget"),
            max_concurrency=d["maxConcurrency"],
            max_attempts=d["maxAttempts"],
            overwrite=d["overwrite"],
            requested_by=_user(request),
        )
        return _accepted(job)


class AllMarketsImportView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("batchimport.start_import",)

    @extend_schema(request=s.AllMarketsImportSerializer, responses={202: dict})
    def post(self, request):
        """POST all-markets/import -> services.import_job_submit (queued on commit)."""
        body = s.AllMarketsImportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        d = body.validated_data
        job = services.import_job_submit(
            path=d["stockScrapperDataPath"],
            all_markets=True,
            run_in_parallel=d["runMarketsInParallel"],
            max_concurrency=d["globalMaxConcurrency"],
            sla_minutes=d.get("globalSlaTarget"),
            batch_size=d.get("batchSize"),
            overwrite=d["overwrite"],
            requested_by=_user(request),
        )
        return _accepted(job)


def _job(job_id: int) -> ImportJob:
    return get_object_or_404(ImportJob, pk=job_id)


_DATE = drf.DateField(required=False, allow_null=True)


def _date_param(request, name: str):
    text = request.query_params.get(name)
    return _DATE.to_internal_value(text) if text else None


class JobStatusView(APIView):
    @extend_schema(responses={200: dict})
    def get(self, request, job_id: int):
        """GET jobs/{id}/status -> selectors.job_status."""
        return Response(selectors.job_status(job=_job(job_id)))


class JobCancelView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("batchimport.cancel_import",)

    @extend_schema(request=None, responses={200: dict})
    def post(self, request, job_id: int):
        """POST jobs/{id}/cancel -> services.import_job_cancel."""
        return Response(selectors.job_status(job=services.import_job_cancel(job=_job(job_id))))


class JobRetryView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("batchimport.retry_import",)

    @extend_schema(request=s.RetrySerializer, responses={202: dict})
    def post(self, request, job_id: int):
        """POST jobs/{id}/retry -> services.import_job_retry (queued on commit)."""
        body = s.RetrySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        job = _job(job_id)
        job = services.import_job_retry(
            job=job, max_attempts=body.validated_data.get("maxRetries"), workers=job.max_concurrency, queue=True
        )
        return _accepted(job)


class MonitoringStatsView(APIView):
    @extend_schema(responses={200: dict})
    def get(self, request):
        """GET monitoring/stats?startDate=&endDate= -> selectors.monitoring_stats."""
        try:
            start, end = _date_param(request, "startDate"), _date_param(request, "endDate")
        except drf.ValidationError:
            raise DomainError("startDate and endDate must be dates (YYYY-MM-DD)", code="invalid_date") from None
        if start and end and start > end:
            raise DomainError("startDate is after endDate", code="invalid_range")
        return Response(selectors.monitoring_stats(start=start, end=end))


class DeadLetterPagination(PageNumberPagination):
    page_query_param = "page"
    page_size_query_param = "pageSize"
    page_size = 50
    max_page_size = 500


class DeadLetterQueueView(generics.ListAPIView):
    """Import files that failed for good, newest first (paged: page, pageSize)."""

    serializer_class = s.DeadLetterSerializer
    pagination_class = DeadLetterPagination
    filter_backends: list = []
    queryset = DeadLetter.objects.filter(kind="import_file").order_by("-created_at", "-id")


class DeadLetterResubmitView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("batchimport.retry_import",)

    @extend_schema(request=None, responses={202: dict})
    def post(self, request, letter_id: int):
        """POST dead-letter-queue/{id}/resubmit -> services.dead_letter_resubmit (queued on commit)."""
        letter = get_object_or_404(DeadLetter, pk=letter_id)
        return _accepted(services.dead_letter_resubmit(dead_letter=letter))


class HealthView(APIView):
    """The shared health (etl.health) plus the imports' own: degraded while a
    running job is past its SLA; 503 when the database or broker is down."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(responses={200: dict, 503: dict})
    def get(self, request):
        """GET health -> etl.health.health_report with selectors.health (no authentication)."""
        report = health_report(extra=lambda: {"imports": self.imports_check(selectors.health())})
        return Response(report.to_dict(), status=report.http_status)

    @staticmethod
    def imports_check(imports: dict) -> dict:
        return {"ok": imports["status"] == "healthy", **{k: v for k, v in imports.items() if k != "status"}}


class AllMarketsScheduleView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("batchimport.schedule_import",)

    @extend_schema(request=s.ScheduleSerializer, responses={201: dict})
    def post(self, request):
        """POST schedules/all-markets -> services.import_schedule_create."""
        body = s.ScheduleSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        d = body.validated_data
        req = d["importRequest"] or {}
        options = {
            "run_in_parallel": req.get("runMarketsInParallel", True),
            "max_concurrency": req.get("globalMaxConcurrency", 2),
            "batch_size": req.get("batchSize"),
        }
        schedule = services.import_schedule_create(
            name=d["name"],
            path=req.get("stockScrapperDataPath", "."),
            cron=d["cronExpression"],
            tz=d["timeZone"],
            options=options,
        )
        body = {
            "id": schedule.pk,
            "name": schedule.name,
            "cron": schedule.cron,
            "timeZone": d["timeZone"],
            "nextRun": schedule.next_run,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class ScheduleDeleteView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("batchimport.schedule_import",)

    @extend_schema(responses={204: None})
    def delete(self, request, schedule_id: int):
        """DELETE schedules/{id} -> services.import_schedule_delete."""
        services.import_schedule_delete(schedule_id=schedule_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
