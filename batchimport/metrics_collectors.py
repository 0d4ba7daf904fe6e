"""Scrape-time import metrics read from the shared tables (see etl.metrics for why)."""

from __future__ import annotations

import logging

from django.db.models import Count
from prometheus_client.core import CounterMetricFamily

from batchimport.models import ImportJob

log = logging.getLogger(__name__)


class ImportCollector:
    def describe(self):
        return []

    def collect(self):
        try:
            breaches = CounterMetricFamily(
                "mytrader_import_sla_breaches", "Market import jobs that ran past their SLA", labels=["market"]
            )
            rows = (
                ImportJob.objects.filter(kind=ImportJob.Kind.MARKET, sla_breached=True)
                .values("market")
                .annotate(n=Count("id"))
            )
            for row in rows:
                breaches.add_metric([row["market"]], row["n"])
            yield breaches
        except Exception:
            log.exception("import metrics could not be read")
