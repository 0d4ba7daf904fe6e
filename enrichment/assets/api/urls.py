from django.urls import path
from rest_framework.routers import SimpleRouter

from enrichment.assets.api import views

router = SimpleRouter()
router.register("runs/asset-enrichment", views.AssetEnrichmentRunViewSet, basename="asset-enrichment-run")

urlpatterns = [
    path("etl/enrich-assets", views.EnrichAssetsView.as_view(), name="etl-enrich-assets"),
    path("etl/enrichment-status", views.EnrichmentStatusView.as_view(), name="etl-enrichment-status"),
    path("etl/enrichment-runs/<int:pk>", views.EnrichmentRunView.as_view(), name="etl-enrichment-run"),
    path(
        "etl/enrichment-sources-status",
        views.EnrichmentSourcesStatusView.as_view(),
        name="etl-enrichment-sources-status",
    ),
    path("etl/enrichment-dead-letters", views.DeadLetterListView.as_view(), name="etl-enrichment-dead-letters"),
    path(
        "etl/enrichment-dead-letters/resubmit",
        views.DeadLetterResubmitView.as_view(),
        name="etl-enrichment-dead-letters-resubmit",
    ),
    path("etl/discover-symbols", views.DiscoverSymbolsView.as_view(), name="etl-discover-symbols"),
    path("etl/symbol-mappings/<int:pk>/validate", views.MappingValidateView.as_view(), name="etl-mapping-validate"),
]
urlpatterns += router.urls
