"""Admin of the candle side."""
