"""Prometheus metrics of asset enrichment, defined once (label: the outcome word),
counted in the database (etl.events) so every worker's counts reach /metrics."""

from etl.events import DbCounter as Counter

asset_enrichment_symbols = Counter(
    "enrichment_asset_symbols_total", "Symbols processed by asset enrichment", ["outcome"]
)
