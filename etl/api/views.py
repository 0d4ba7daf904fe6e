from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from etl import services
from etl.api import serializers as s
from etl.api.filters import MarketDataFilter, SymbolFilter
from etl.api.permissions import StaffWithPermission
from etl.health import health_report
from etl.models import AssetClass, DataProvider, Market, MarketData, Symbol, TradingSession


class AssetClassViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = AssetClass.objects.all()
    serializer_class = s.AssetClassSerializer
    filterset_fields = ["code", "is_active"]


class MarketViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Market.objects.select_related("default_asset_class")
    serializer_class = s.MarketSerializer
    filterset_fields = ["code", "is_active"]


class TradingSessionViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = TradingSession.objects.select_related("market")
    serializer_class = s.TradingSessionSerializer
    filterset_fields = {"market__code": ["exact"], "is_active": ["exact"]}


class DataProviderViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = DataProvider.objects.all()
    serializer_class = s.DataProviderSerializer
    filterset_fields = ["code", "is_enabled"]


class SymbolViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Symbol.objects.select_related("market", "asset_class").prefetch_related("mappings__provider")
    serializer_class = s.SymbolSerializer
    filterset_class = SymbolFilter


class CandleCursorPagination(CursorPagination):
    ordering = ("ts", "id")
    page_size = 500
    page_size_query_param = "page_size"
    max_page_size = 10_000


class MarketDataViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = MarketData.objects.all()
    serializer_class = s.MarketDataSerializer
    filterset_class = MarketDataFilter
    pagination_class = CandleCursorPagination


class BootstrapReferenceDataView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("etl.bootstrap_reference_data",)

    @extend_schema(
        request=s.BootstrapRequestSerializer,
        responses={200: s.BootstrapResultSerializer, 202: s.QueuedSerializer, 400: s.ErrorSerializer},
    )
    def post(self, request):
        """services.reference_data_bootstrap, or reference_data_bootstrap_queue with run_async."""
        params = s.BootstrapRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        overwrite = params.validated_data["overwrite"]
        if params.validated_data["run_async"]:
            queued = services.reference_data_bootstrap_queue(overwrite=overwrite)
            return Response({"task_id": queued.task_id}, status=status.HTTP_202_ACCEPTED)
        return Response(services.reference_data_bootstrap(overwrite=overwrite).to_dict())


class BootstrapStatusView(APIView):
    @extend_schema(responses={200: dict})
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

    @extend_schema(responses={200: dict, 503: dict})
    def get(self, request):
        report = health_report()
        return Response(report.to_dict(), status=report.http_status)


class LoginTokenView(ObtainAuthToken):
    """Exchange a username and password for an API token (throttled; repeated
    failures lock the username out, see AXES_* settings)."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"
