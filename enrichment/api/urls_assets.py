from django.urls import path

from enrichment.api import views_assets as v

urlpatterns = [
    path("etl/enrich-assets", v.EnrichAssetsView.as_view(), name="etl-enrich-assets"),
    path("etl/enrichment-status", v.EnrichmentStatusView.as_view(), name="etl-enrichment-status"),
    path("etl/enrichment-runs/<int:pk>", v.EnrichmentRunView.as_view(), name="etl-enrichment-run"),
    path(
        "etl/enrichment-sources-status", v.EnrichmentSourcesStatusView.as_view(), name="etl-enrichment-sources-status"
    ),
    path("etl/enrichment-dead-letters", v.DeadLetterListView.as_view(), name="etl-enrichment-dead-letters"),
    path(
        "etl/enrichment-dead-letters/resubmit",
        v.DeadLetterResubmitView.as_view(),
        name="etl-enrichment-dead-letters-resubmit",
    ),
    path("etl/discover-symbols", v.DiscoverSymbolsView.as_view(), name="etl-discover-symbols"),
    path("etl/symbol-mappings/<int:pk>/validate", v.MappingValidateView.as_view(), name="etl-mapping-validate"),
]
