"""django-q2 entry points of asset enrichment: ids in, one service call, counts out."""

from __future__ import annotations

from typing import Any

from enrichment.models import AssetEnrichmentRun
from enrichment.services import assets, discovery


def assets_enrich(run_id: int) -> dict[str, Any]:
    run = AssetEnrichmentRun.objects.get(pk=run_id)
    options = assets.EnrichOptions.from_dict(run.options)
    return assets.assets_enrich(options=options, run=run).to_dict(details=0)


def dead_letters_resubmit(ids: list[int] | None = None, requested_by: str = "") -> dict[str, Any]:
    return assets.dead_letters_resubmit(ids=ids, requested_by=requested_by).to_dict()


def symbols_discover(provider_code: str = "BINANCE") -> dict[str, Any]:
    return discovery.symbols_discover(provider_code=provider_code).to_dict()
