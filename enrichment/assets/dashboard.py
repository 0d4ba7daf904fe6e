"""The enrichment-coverage panel of the dashboard: per market, how many symbols are
enriched or partially enriched, and which expected fields are still missing."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from enrichment.assets.selectors import COVERAGE_FIELDS, enrichment_coverage


def coverage_context(request: HttpRequest) -> dict[str, Any]:
    coverage = enrichment_coverage()
    for market in coverage["markets"]:
        # One cell per field, in the header's order (templates cannot index a dict by a variable).
        market["cells"] = [market["fields"][name] for name in COVERAGE_FIELDS]
        market["meets_goal"] = (market["coverage_percent"] or 0) > coverage["goal_percent"]
    return {
        "coverage": coverage,
        "field_names": [name.replace("_", " ") for name in COVERAGE_FIELDS],
        "symbols_url": reverse("admin:enrichment_symbolforenrichment_changelist"),
    }
