"""Candle-side models: market_data_v2, compute log, quality metrics, enrichment status, backfill state."""
