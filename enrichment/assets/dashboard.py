"""The enrichment-coverage panel of the dashboard: per market, how many symbols are
enriched or partially enriched, and which expected fields are still missing."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from enrichment.assets.selectors import COVERAGE_FIELDS, enrichment_coverage
from etl.models import Symbol


def _field_label(name: str) -> str:
    """A symbol field as the operator reads it (its translated verbose name)."""
    return str(Symbol._meta.get_field(name).verbose_name)


def coverage_context(request: HttpRequest) -> dict[str, Any]:
    coverage = enrichment_coverage()
    for market in coverage["markets"]:
        # One cell per field, in the header's order (templates cannot index a dict by a variable).
        market["cells"] = [market["fields"][name] for name in COVERAGE_FIELDS]
        market["meets_goal"] = (market["coverage_percent"] or 0) > coverage["goal_percent"]
        market["missing_labels"] = [_field_label(name) for name in market["missing"]]
    return {
        "coverage": coverage,
        "field_names": [_field_label(name) for name in COVERAGE_FIELDS],
        "symbols_url": reverse("admin:enrichment_symbolforenrichment_changelist"),
    }
