"""Scrape-time provider metrics read from the shared tables (see etl.metrics for why)."""

from __future__ import annotations

import logging

from prometheus_client.core import GaugeMetricFamily

from enrichment.providers import circuit
from enrichment.providers.models import CircuitState
from etl.event_triggers import EventTrigger
from etl.events import DbCounter
from etl.models import DataProvider

log = logging.getLogger(__name__)

CIRCUIT_CODES = {"closed": 0, "open": 1, "half_open": 2}


# Counted as each attempt is logged (a row trigger on the fetch log), so the daily prune of
# old log rows never lowers it.
provider_requests = DbCounter(
    "mytrader_provider_requests_total", "Provider HTTP attempts by outcome", ["provider", "outcome"]
)
EVENT_TRIGGERS = (
    EventTrigger(
        table="enrichment_fetch_log",
        family="mytrader_provider_requests",
        when="NEW.attempt >= 1",
        labels=(("provider", "NEW.provider"), ("outcome", "NEW.outcome")),
        events="INSERT",
    ),
)


def circuits_health(now) -> dict:
    """Health check: degraded while any provider's circuit is open."""
    states = {s.provider: s for s in CircuitState.objects.all()}  # one read for every provider
    opened = [
        code
        for code in DataProvider.objects.values_list("code", flat=True)
        if circuit.circuit_state_of(states.get(code)) == "open"
    ]
    return {"ok": not opened, "open": opened}


class ProviderCollector:
    event_triggers = EVENT_TRIGGERS

    def describe(self):
        return []

    def collect(self):
        try:
            state = GaugeMetricFamily(
                "mytrader_provider_circuit_state", "Circuit state: 0 closed, 1 open, 2 half-open", labels=["provider"]
            )
            states = {s.provider: s for s in CircuitState.objects.all()}  # one read for every provider
            for code in DataProvider.objects.values_list("code", flat=True):
                state.add_metric([code], CIRCUIT_CODES.get(str(circuit.circuit_state_of(states.get(code))), 0))
            yield state
        except Exception:  # a scrape must answer even when the database does not
            log.exception("provider metrics could not be read")
