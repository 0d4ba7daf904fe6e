"""/metrics: the in-process families and the database-derived ones together.

django-prometheus's own view, with PROMETHEUS_MULTIPROC_DIR set, builds a
registry holding only the multiprocess collector, which drops every collector
the apps registered. This one adds them back: the process-local families come
from the multiprocess files of every gunicorn worker of this host (or from the
default registry without the directory), the `mytrader_*`, `assetclass_*`, ...
families from the shared tables, so every worker answers the same.
"""

from __future__ import annotations

import os

from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from etl.metrics import registered_collectors


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
    return HttpResponse(generate_latest(metrics_registry()), content_type=CONTENT_TYPE_LATEST)
