from django.urls import include, path

urlpatterns = [
    path("", include("enrichment.assets.api.urls")),
    path("", include("enrichment.candles.api.urls")),
]
