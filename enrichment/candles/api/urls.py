from django.urls import path

from enrichment.candles.api import views

urlpatterns = [
    path("v1/enrichment/status/<str:symbol>", views.EnrichmentStatusView.as_view(), name="enrichment-status"),
    path("v1/enrichment/metrics", views.EnrichmentMetricsView.as_view(), name="enrichment-metrics"),
    path("v1/enrichment/trigger", views.EnrichmentTriggerView.as_view(), name="enrichment-trigger"),
    path("v1/enrichment/freshness/<str:symbol>", views.FreshnessView.as_view(), name="enrichment-freshness"),
    path("v1/data/quality/<str:symbol>", views.DataQualityView.as_view(), name="data-quality"),
    path("v1/market/features/<str:symbol>/<str:timeframe>", views.MarketFeaturesView.as_view(), name="market-features"),
]
