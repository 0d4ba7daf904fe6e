"""Scrape-time provider metrics read from the shared tables (see etl.metrics for why)."""

from __future__ import annotations

import logging

from django.db.models import Count
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from enrichment.providers import circuit
from enrichment.providers.models import FetchLog
from etl.models import DataProvider

log = logging.getLogger(__name__)

CIRCUIT_CODES = {"closed": 0, "open": 1, "half_open": 2}


class ProviderCollector:
    def describe(self):
        return []

    def collect(self):
        try:
            state = GaugeMetricFamily(
                "mytrader_provider_circuit_state", "Circuit state: 0 closed, 1 open, 2 half-open", labels=["provider"]
            )
            for code in DataProvider.objects.values_list("code", flat=True):
                state.add_metric([code], CIRCUIT_CODES.get(str(circuit.circuit_state(code)), 0))
            requests = CounterMetricFamily(
                "mytrader_provider_requests", "Provider HTTP attempts by outcome", labels=["provider", "outcome"]
            )
            rows = FetchLog.objects.filter(attempt__gte=1).values("provider", "outcome").annotate(n=Count("id"))
            for row in rows:
                requests.add_metric([row["provider"], row["outcome"]], row["n"])
            yield state
            yield requests
        except Exception:  # a scrape must answer even when the database does not
            log.exception("provider metrics could not be read")
