"""Enrichment models: provider side (clients, circuits, logs, dead letters) and
candle side (market_data_v2, features, quality, backfill)."""

from enrichment.models.candles import *  # noqa: F401,F403
from enrichment.models.providers import *  # noqa: F401,F403
