"""The freshness panel of the dashboard: fresh and stale live series per market, the stalest."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from enrichment.candles.freshness import freshness_summary


def freshness_context(request: HttpRequest) -> dict[str, Any]:
    return {
        "markets": freshness_summary(),
        "live_markets_url": reverse("admin:enrichment_livemarket_changelist"),
        "live_series_url": reverse("admin:enrichment_liveseries_changelist"),
    }
