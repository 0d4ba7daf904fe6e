from django.urls import path
from rest_framework.routers import DefaultRouter

from etl.api import views

router = DefaultRouter()
router.register("asset-classes", views.AssetClassViewSet)
router.register("markets", views.MarketViewSet)
router.register("trading-sessions", views.TradingSessionViewSet)
router.register("data-providers", views.DataProviderViewSet)
router.register("symbols", views.SymbolViewSet)
router.register("market-data", views.MarketDataViewSet)

urlpatterns = [
    path("etl/bootstrap-reference-data", views.BootstrapReferenceDataView.as_view(), name="etl-bootstrap"),
    path("etl/bootstrap-status", views.BootstrapStatusView.as_view(), name="etl-bootstrap-status"),
    path("etl/validate-reference-data", views.ValidateReferenceDataView.as_view(), name="etl-validate-reference"),
    path("etl/health", views.HealthView.as_view(), name="etl-health"),
    path("auth/token/", views.LoginTokenView.as_view(), name="api-token"),
    *router.urls,
]
