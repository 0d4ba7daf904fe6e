"""The old system's endpoints under /api/etl/asset-class-correction/. Each parses its
input, calls one service and returns its result."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from corrections import selectors, services
from corrections.api import serializers as s
from corrections.models import CorrectionRun, Phase
from etl.api.permissions import StaffWithPermission
from etl.errors import DomainError
from etl.health import health_report


def _latest(*phases: str) -> CorrectionRun:
    run = CorrectionRun.objects.filter(phase__in=phases).first() if phases else CorrectionRun.objects.first()
    if run is None:
        raise DomainError("No correction run matches; give run_id.", code="not_found", status_code=404)
    return run


class AnalyzeView(APIView):
    @extend_schema(parameters=[s.AnalyzeQuerySerializer], responses={200: dict})
    def get(self, request):
        params = s.AnalyzeQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        return Response(services.correction_analyze(sample_size=params.validated_data["sample_size"]).to_dict())


class PreviewView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("corrections.view_correctionrun",)

    @extend_schema(request=s.PreviewSerializer, responses={200: dict})
    def post(self, request):
        params = s.PreviewSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        run = data.get("run_id")
        scope = (
            None
            if run
            else selectors.scope_for(only_null=data["only_null"], overwrite_mismatched=data["overwrite_mismatched"])
        )
        page = services.correction_preview(run=run, scope=scope, page=data["page"], page_size=data["page_size"])
        return Response({"run_id": run.pk if run else None, **page.to_dict()})


class ExecuteView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("corrections.execute_correction",)

    @extend_schema(request=s.ExecuteSerializer, responses={200: dict, 202: dict})
    def post(self, request):
        params = s.ExecuteSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        run = data.get("run_id") or services.correction_run_create(
            requested_by=request.user.get_username(),
            only_null=data["only_null"],
            overwrite_mismatched=data["overwrite_mismatched"],
            batch_size=data["batch_size"],
            validate_each_batch=data["validate_each_batch"],
        )
        if data["run_async"]:
            services.correction_execute_queue(run=run)
            return Response({"run_id": run.pk, "status": "queued"}, status=status.HTTP_202_ACCEPTED)
        return Response(services.correction_execute(run=run).to_dict())


class ValidateView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("corrections.execute_correction",)

    @extend_schema(request=s.RunSerializer, responses={200: dict})
    def post(self, request):
        params = s.RunSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        run = params.validated_data.get("run_id") or _latest(Phase.EXECUTED, Phase.VALIDATED)
        return Response(services.correction_validate(run=run).to_dict())


class StatusView(APIView):
    @extend_schema(parameters=[s.RunSerializer], responses={200: dict})
    def get(self, request):
        params = s.RunSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        run = params.validated_data.get("run_id") or _latest()
        return Response(selectors.correction_status(run=run))


class CancelView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("corrections.execute_correction",)

    @extend_schema(request=s.RunSerializer, responses={200: dict})
    def post(self, request):
        params = s.RunSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        run = params.validated_data.get("run_id") or _latest(Phase.EXECUTING, Phase.ROLLING_BACK)
        return Response(selectors.correction_status(run=services.correction_cancel(run=run)))


class RollbackView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("corrections.rollback_correction",)

    @extend_schema(request=s.RollbackSerializer, responses={200: dict, 409: dict})
    def post(self, request):
        params = s.RollbackSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        result = services.correction_rollback(
            run=data["run_id"], reason=data["reason"], force=data["force"], requested_by=request.user.get_username()
        )
        return Response(result.to_dict())


class HealthView(APIView):
    """Database reachable, no interrupted run waiting to be resumed. No authentication."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(responses={200: dict, 503: dict})
    def get(self, request):
        # The correction's own checks (interrupted or failed run) beside the shared ones.
        report = health_report(extra=lambda: selectors.correction_health()["checks"])
        return Response(report.to_dict(), status=report.http_status)


class MetricsView(APIView):
    @extend_schema(responses={200: dict})
    def get(self, request):
        return Response(services.correction_metrics())
