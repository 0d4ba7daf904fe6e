"""Prometheus metrics of asset enrichment, defined once (label: the outcome word)."""

from prometheus_client import Counter

asset_enrichment_symbols = Counter(
    "enrichment_asset_symbols_total", "Symbols processed by asset enrichment", ["outcome"]
)
