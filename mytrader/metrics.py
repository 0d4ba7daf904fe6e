"""/metrics for Prometheus, served only to a scraper that is allowed to read it,
with the in-process families and the database-derived ones together.

The page names every provider, run kind and market with their failure counts:
not for the public. Access: the bearer token `METRICS_TOKEN`, or a client
address inside `METRICS_ALLOWED_NETWORKS` (see README "Settings").

django-prometheus's own view, with PROMETHEUS_MULTIPROC_DIR set, builds a
registry holding only the multiprocess collector, which drops every collector
the apps registered. This one adds them back: the process-local families come
from the multiprocess files of every gunicorn worker of this host (or from the
default registry without the directory), the `mytrader_*`, `assetclass_*`, ...
families from the shared tables, so every worker answers the same.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from functools import cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.utils.translation import gettext as _
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from etl.metrics import registered_collectors


@cache
def _networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in spec if item.strip())


def metrics_access_allowed(request: HttpRequest) -> bool:
    """True when the request carries the metrics token or comes from an allowed network."""
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip(), token):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in _networks(tuple(settings.METRICS_ALLOWED_NETWORKS)))


def metrics_registry() -> CollectorRegistry:
    """The registry one scrape reads."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY  # the apps' collectors are registered in it already
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    for collector in registered_collectors().values():
        registry.register(collector)
    return registry


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not metrics_access_allowed(request):
        return HttpResponseForbidden(
            _("Metrics are served only to the configured scrapers."), content_type="text/plain"
        )
    return HttpResponse(generate_latest(metrics_registry()), content_type=CONTENT_TYPE_LATEST)
