from django.urls import path

from enrichment.api import views_features as v

urlpatterns = [
    path("v1/enrichment/status/<str:symbol>", v.EnrichmentStatusView.as_view(), name="enrichment-status"),
    path("v1/enrichment/metrics", v.EnrichmentMetricsView.as_view(), name="enrichment-metrics"),
    path("v1/enrichment/trigger", v.EnrichmentTriggerView.as_view(), name="enrichment-trigger"),
    path("v1/data/quality/<str:symbol>", v.DataQualityView.as_view(), name="data-quality"),
    path("v1/market/features/<str:symbol>/<str:timeframe>", v.MarketFeaturesView.as_view(), name="market-features"),
]
