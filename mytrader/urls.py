from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.utils.functional import lazy
from django.utils.translation import gettext_lazy as _
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from mytrader.metrics import metrics_view

admin.site.site_header = _("MyTrader Data Integrity")
admin.site.site_title = _("MyTrader Data Integrity")
admin.site.index_title = _("Operations console")

urlpatterns = [
    path("admin/", admin.site.urls),
    # Browsers ask every host for /favicon.ico.
    # Resolved per request: in production the static URL needs collectstatic's manifest.
    path("favicon.ico", RedirectView.as_view(url=lazy(static, str)("etl/favicon.svg"), permanent=True)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its init script as a file, so the CSP needs no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    # Each app owns its API paths; they are mounted under /api/.
    path("api/", include("etl.api.urls")),
    path("api/", include("batchimport.api.urls")),
    path("api/", include("corrections.api.urls")),
    path("api/", include("enrichment.api.urls")),
    # Prometheus scrapes this; only with the token or from an allowed network.
    path("metrics", metrics_view, name="prometheus-django-metrics"),
]
