from django.urls import path
from rest_framework.routers import SimpleRouter

from enrichment.candles.api import views

router = SimpleRouter()
router.register("runs/features", views.FeatureRunViewSet, basename="feature-run")
router.register("runs/backfills", views.BackfillViewSet, basename="backfill")

urlpatterns = [
    path("v1/enrichment/status/<str:symbol>", views.EnrichmentStatusView.as_view(), name="enrichment-status"),
    path("v1/enrichment/metrics", views.EnrichmentMetricsView.as_view(), name="enrichment-metrics"),
    path("v1/enrichment/trigger", views.EnrichmentTriggerView.as_view(), name="enrichment-trigger"),
    path("v1/enrichment/freshness/<str:symbol>", views.FreshnessView.as_view(), name="enrichment-freshness"),
    path("v1/data/quality/<str:symbol>", views.DataQualityView.as_view(), name="data-quality"),
    path("v1/market/features/<str:symbol>/<str:timeframe>", views.MarketFeaturesView.as_view(), name="market-features"),
]
urlpatterns += router.urls
