from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.utils.translation import gettext
from django_q.models import Schedule
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from etl import services
from etl.api import serializers as s
from etl.api.filters import MarketDataFilter, SymbolFilter
from etl.api.permissions import StaffWithPermission
from etl.api.request_policy import PolicyViewMixin, ignored_options_record
from etl.api.runs import PipelineRunAcceptedSerializer, accepted, inline_limit, pipeline_run_body
from etl.errors import DomainError
from etl.health import health_report
from etl.models import AssetClass, DataProvider, Market, MarketData, Symbol, TradingSession
from etl.services.schedules import schedule_run_now, schedule_run_permission


class AssetClassViewSet(viewsets.ReadOnlyModelViewSet):
    pagination_ordering = ("code", "id")
    queryset = AssetClass.objects.all()
    serializer_class = s.AssetClassSerializer
    filterset_fields = ["code", "is_active"]


class MarketViewSet(viewsets.ReadOnlyModelViewSet):
    pagination_ordering = ("code", "id")
    queryset = Market.objects.select_related("default_asset_class")
    serializer_class = s.MarketSerializer
    filterset_fields = ["code", "is_active"]


class TradingSessionViewSet(viewsets.ReadOnlyModelViewSet):
    pagination_ordering = ("market_id", "id")
    queryset = TradingSession.objects.select_related("market")
    serializer_class = s.TradingSessionSerializer
    filterset_fields = {"market__code": ["exact"], "is_active": ["exact"]}


class DataProviderViewSet(viewsets.ReadOnlyModelViewSet):
    pagination_ordering = ("code", "id")
    queryset = DataProvider.objects.all()
    serializer_class = s.DataProviderSerializer
    filterset_fields = ["code", "is_enabled"]


class SymbolViewSet(viewsets.ReadOnlyModelViewSet):
    pagination_ordering = ("ticker", "id")
    queryset = Symbol.objects.select_related("market", "asset_class").prefetch_related("mappings__provider")
    serializer_class = s.SymbolSerializer
    filterset_class = SymbolFilter


class MarketDataViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = MarketData.objects.all()
    serializer_class = s.MarketDataSerializer
    filterset_class = MarketDataFilter
    pagination_ordering = ("ts", "id")  # oldest first: a series reads forward


class BootstrapReferenceDataView(PolicyViewMixin, APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("etl.bootstrap_reference_data",)

    @extend_schema(
        parameters=[s.BootstrapQuerySerializer],
        request=s.BootstrapRequestSerializer,
        responses={
            200: s.BootstrapResultSerializer,
            202: PipelineRunAcceptedSerializer,
            400: s.ErrorSerializer,
            409: s.ErrorSerializer,
        },
    )
    def post(self, request):
        """A pipeline run of the one step `bootstrap` (202), or in the request with `runAsync: false`."""
        body = self.policy_body(s.BootstrapRequestSerializer).validated_data
        query = self.policy_query(s.BootstrapQuerySerializer).validated_data
        options = {"overwrite": body.get("overwrite", query.get("overwrite", False))}
        if body["run_async"]:
            run = services.pipeline_queue(steps=["bootstrap"], options=options, requested_by=self._user())
            ignored_options_record(run=run, ignored=self.ignored_options)
            return accepted(request, pipeline_run_body(run), url_name="pipeline-run-detail", run_id=run.pk)
        result = services.pipeline_run(
            steps=["bootstrap"],
            options=options,
            trigger="api",
            requested_by=self._user(),
            max_seconds=inline_limit(None),
        )
        step = next(step for step in result.steps if step.name == "bootstrap")
        if step.status != "succeeded":
            raise DomainError(
                gettext("bootstrap failed: %(error)s") % {"error": step.error or result.error}, code="bootstrap_failed"
            )
        return Response({"run_id": result.run_id, **step.counts})

    def _user(self) -> str:
        return self.request.user.get_username()


class BootstrapStatusView(APIView):
    @extend_schema(responses={200: s.BootstrapStatusSerializer})
    def get(self, request):
        return Response(services.bootstrap_status())


class ValidateReferenceDataView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("etl.view_market",)

    @extend_schema(request=None, responses={200: s.ValidationReportSerializer})
    def post(self, request):
        return Response(services.reference_data_validate().to_dict())


class HealthView(APIView):
    """Healthy, degraded (workers, queue, runs or providers need a look) or
    unhealthy (503: database or queue broker down). No authentication."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(responses={200: s.HealthSerializer, 503: s.HealthSerializer})
    def get(self, request):
        report = health_report()
        return Response(report.to_dict(), status=report.http_status)


class LoginTokenView(ObtainAuthToken):
    """Exchange a username and password for an API token (throttled; repeated
    failures lock the username out, see AXES_* settings)."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"


class ScheduleRunNowView(APIView):
    """Fire a django-q2 schedule now, as the admin's "Run now": staff holding the
    permission the schedule's task asks (etl.services.schedules.schedule_run_permission)."""

    @extend_schema(
        request=None,
        responses={202: s.RunNowSerializer, 403: s.ErrorSerializer, 404: s.ErrorSerializer},
        operation_id="schedules_run_now",
    )
    def post(self, request, schedule_id: int):
        """POST schedules/{id}/run-now -> services.schedules.schedule_run_now."""
        if not request.user.is_staff:
            raise PermissionDenied(gettext("running a schedule needs a staff user"))
        schedule = get_object_or_404(Schedule, pk=schedule_id)
        permission = schedule_run_permission(schedule)
        if not request.user.has_perm(permission):
            raise PermissionDenied(
                gettext("running this schedule needs the permission %(permission)s") % {"permission": permission}
            )
        return Response(schedule_run_now(schedule=schedule).to_dict(), status=status.HTTP_202_ACCEPTED)
