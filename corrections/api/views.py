"""The old system's endpoints under /api/etl/asset-class-correction/, and the
correction runs as a resource (/api/runs/corrections/). Each parses its input
with the request policy, calls one service and returns its result; execute and
rollback answer 202 with the run and its Location unless `runAsync: false`."""

from __future__ import annotations

from django.utils.translation import gettext
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from corrections import selectors, services
from corrections.api import serializers as s
from corrections.models import CorrectionRun, Phase
from etl.api.permissions import StaffWithPermission
from etl.api.request_policy import PolicyViewMixin, ignored_options_record
from etl.api.runs import RunListQuery, RunViewSet, accepted
from etl.api.serializers import ErrorSerializer
from etl.errors import DomainError
from etl.health import health_report

RUN_DETAIL = "correction-run-detail"


def _status(run: CorrectionRun) -> dict:
    run.refresh_from_db()
    return {**selectors.correction_status(run=run), "ignored_options": (run.options or {}).get("ignored_options", {})}


def _latest(*phases: str) -> CorrectionRun:
    run = CorrectionRun.objects.filter(phase__in=phases).first() if phases else CorrectionRun.objects.first()
    if run is None:
        raise DomainError(gettext("No correction run matches; give run_id."), code="not_found", status_code=404)
    return run


class AnalyzeView(PolicyViewMixin, APIView):
    @extend_schema(parameters=[s.AnalyzeQuerySerializer], responses={200: s.AnalyzeSerializer, 400: ErrorSerializer})
    def get(self, request):
        params = self.policy_query(s.AnalyzeQuerySerializer)
        return Response(services.correction_analyze(sample_size=params.validated_data["sample_size"]).to_dict())


class PreviewView(PolicyViewMixin, APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("corrections.view_correctionrun",)

    @extend_schema(request=s.PreviewSerializer, responses={200: s.PreviewPageSerializer, 400: ErrorSerializer})
    def post(self, request):
        data = self.policy_body(s.PreviewSerializer).validated_data
        run = data.get("run_id")
        scope = (
            None
            if run
            else selectors.scope_for(only_null=data["only_null"], overwrite_mismatched=data["overwrite_mismatched"])
        )
        page = services.correction_preview(run=run, scope=scope, page=data["page"], page_size=data["page_size"])
        return Response({"run_id": run.pk if run else None, **page.to_dict()})


class ExecuteView(PolicyViewMixin, APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("corrections.execute_correction",)

    @extend_schema(
        request=s.ExecuteSerializer,
        responses={
            200: s.ExecuteResultSerializer,
            202: s.CorrectionAcceptedSerializer,
            400: ErrorSerializer,
            409: ErrorSerializer,
        },
    )
    def post(self, request):
        """services.correction_execute_queue (202), or correction_execute in the request with `runAsync: false`."""
        data = self.policy_body(s.ExecuteSerializer).validated_data
        run = data.get("run_id") or services.correction_run_create(
            requested_by=request.user.get_username(),
            only_null=data["only_null"],
            overwrite_mismatched=data["overwrite_mismatched"],
            batch_size=data["batch_size"],
            validate_each_batch=data["validate_each_batch"],
        )
        ignored_options_record(run=run, ignored=self.ignored_options)
        if data["run_async"]:
            services.correction_execute_queue(run=run)
            return accepted(request, _status(run), url_name=RUN_DETAIL, run_id=run.pk)
        return Response(services.correction_execute(run=run).to_dict())


class ValidateView(PolicyViewMixin, APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("corrections.execute_correction",)

    @extend_schema(
        request=s.RunSerializer,
        responses={200: s.ValidationResultSerializer, 400: ErrorSerializer, 404: ErrorSerializer, 409: ErrorSerializer},
    )
    def post(self, request):
        params = self.policy_body(s.RunSerializer)
        run = params.validated_data.get("run_id") or _latest(Phase.EXECUTED, Phase.VALIDATED)
        return Response(services.correction_validate(run=run).to_dict())


class StatusView(PolicyViewMixin, APIView):
    @extend_schema(parameters=[s.RunSerializer], responses={200: s.CorrectionStatusSerializer, 404: ErrorSerializer})
    def get(self, request):
        params = self.policy_query(s.RunSerializer)
        return Response(_status(params.validated_data.get("run_id") or _latest()))


class CancelView(PolicyViewMixin, APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("corrections.execute_correction",)

    @extend_schema(
        request=s.RunSerializer,
        responses={200: s.CorrectionStatusSerializer, 404: ErrorSerializer, 409: ErrorSerializer},
    )
    def post(self, request):
        params = self.policy_body(s.RunSerializer)
        run = params.validated_data.get("run_id") or _latest(Phase.EXECUTING, Phase.ROLLING_BACK)
        return Response(_status(services.correction_cancel(run=run)))


def _rollback(request, run: CorrectionRun, data: dict, *, run_async: bool) -> Response:
    """services.correction_rollback_queue (202) or, in the request, correction_rollback."""
    user = request.user.get_username()
    if run_async:
        services.correction_rollback_queue(run=run, reason=data["reason"], force=data["force"], requested_by=user)
        return accepted(request, _status(run), url_name=RUN_DETAIL, run_id=run.pk)
    result = services.correction_rollback(run=run, reason=data["reason"], force=data["force"], requested_by=user)
    return Response(result.to_dict())


class RollbackView(PolicyViewMixin, APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("corrections.rollback_correction",)

    @extend_schema(
        request=s.RollbackSerializer,
        responses={
            200: s.RollbackResultSerializer,
            202: s.CorrectionAcceptedSerializer,
            400: ErrorSerializer,
            409: ErrorSerializer,
        },
    )
    def post(self, request):
        data = self.policy_body(s.RollbackSerializer).validated_data
        return _rollback(request, data["run_id"], data, run_async=data["run_async"])


class HealthView(APIView):
    """Database reachable, no interrupted run waiting to be resumed. No authentication."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(responses={200: s.CorrectionHealthSerializer, 503: s.CorrectionHealthSerializer})
    def get(self, request):
        # The correction's own checks (interrupted or failed run) beside the shared ones.
        report = health_report(extra=lambda: selectors.correction_health()["checks"])
        return Response(report.to_dict(), status=report.http_status)


class MetricsView(APIView):
    @extend_schema(responses={200: s.MetricsSerializer})
    def get(self, request):
        return Response(services.correction_metrics())


@extend_schema_view(
    list=extend_schema(parameters=[RunListQuery], responses={200: s.CorrectionStatusSerializer(many=True)}),
    retrieve=extend_schema(responses={200: s.CorrectionStatusSerializer, 404: ErrorSerializer}),
)
class CorrectionRunViewSet(RunViewSet):
    """Correction runs: `kind` filters on the phase (analyzed, executed, rolled_back, ...)."""

    queryset = CorrectionRun.objects.all()
    serializer_class = s.CorrectionStatusSerializer
    kind_field = "phase"
    action_perms = {
        "cancel": ("corrections.execute_correction",),
        "retry": ("corrections.execute_correction",),
        "rollback": ("corrections.rollback_correction",),
    }

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response([_status(run) for run in page])

    def retrieve(self, request, *args, **kwargs):
        return Response(_status(self.get_object()))

    @extend_schema(request=None, responses={200: s.CorrectionStatusSerializer, 409: ErrorSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """services.correction_cancel: stops after the current batch."""
        return Response(_status(services.correction_cancel(run=self.get_object())))

    @extend_schema(request=None, responses={202: s.CorrectionAcceptedSerializer, 409: ErrorSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """services.correction_execute_queue: executes the run again, resuming from its last batch."""
        run = services.correction_execute_queue(run=self.get_object())
        return accepted(request, _status(run), url_name=RUN_DETAIL, run_id=run.pk)

    @extend_schema(
        request=s.RunRollbackSerializer,
        responses={202: s.CorrectionAcceptedSerializer, 400: ErrorSerializer, 409: ErrorSerializer},
    )
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        """services.correction_rollback_queue, as the old rollback endpoint does."""
        data = self.policy_body(s.RunRollbackSerializer).validated_data
        return _rollback(request, self.get_object(), data, run_async=True)
