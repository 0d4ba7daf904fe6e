# The admin is split like the models: provider side and candle side.
from enrichment import admin_candles, admin_providers  # noqa: F401
