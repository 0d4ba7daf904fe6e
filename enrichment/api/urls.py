from django.urls import include, path

urlpatterns = [
    path("", include("enrichment.api.urls_assets")),
    path("", include("enrichment.api.urls_features")),
]
