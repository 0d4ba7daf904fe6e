"""django-q2 entry points of asset enrichment: ids in, one service call, counts out."""

from __future__ import annotations

from typing import Any

from enrichment.assets.models import AssetEnrichmentRun
from enrichment.assets.services import dead_letters, discovery, enrich
from enrichment.assets.services.enrich_options import EnrichOptions


def assets_enrich(run_id: int) -> dict[str, Any]:
    """Calls enrich.assets_enrich on the queued run."""
    run = AssetEnrichmentRun.objects.get(pk=run_id)
    return enrich.assets_enrich(options=EnrichOptions.from_dict(run.options), run=run).to_dict(details=0)


def enrichment_dead_letters_resubmit(ids: list[int] | None = None, requested_by: str = "") -> dict[str, Any]:
    """Calls dead_letters.enrichment_dead_letters_resubmit."""
    return dead_letters.enrichment_dead_letters_resubmit(ids=ids, requested_by=requested_by).to_dict()


def symbols_discover(provider_code: str = "BINANCE") -> dict[str, Any]:
    """Calls discovery.symbols_discover."""
    return discovery.symbols_discover(provider_code=provider_code).to_dict()
