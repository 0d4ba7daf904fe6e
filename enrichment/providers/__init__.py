"""The HTTP layer under asset enrichment and candles: one client per vendor (all the
same shape, see base.py), the shared rate limit and circuit breaker, and the fetch log.
It owns its state (models.py) and imports nothing from `assets` or `candles`: what it
needs from them (a mapped symbol) is passed in. `clients.get_client` builds a client."""
