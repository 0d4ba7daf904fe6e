"""Provider clients: one module per vendor, all the same shape (see base.py).

`get_client("BINANCE")` builds the client for a `DataProvider` record: base URL,
timeout and rate budget from the record, API key from the environment.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from enrichment.providers.base import AssetInfo, ProviderCandle, ProviderClient, ProviderError  # noqa: F401

# code -> "module:Class"; imported lazily so a vendor module's import cost is paid only when used.
CLIENTS: dict[str, str] = {
    "YAHOO_FINANCE": "enrichment.providers.yahoo:YahooClient",
    "BINANCE": "enrichment.providers.binance:BinanceClient",
    "POLYGON": "enrichment.providers.polygon:PolygonClient",
    "COINMARKETCAP": "enrichment.providers.coinmarketcap:CoinMarketCapClient",
    "ALPHA_VANTAGE": "enrichment.providers.alphavantage:AlphaVantageClient",
}


def client_class(provider_code: str) -> type[ProviderClient]:
    try:
        module_name, class_name = CLIENTS[provider_code].split(":")
    except KeyError:
        raise ProviderError(f"No client for provider {provider_code!r}", permanent=True) from None
    return getattr(import_module(module_name), class_name)


def get_client(provider_code: str, **options: Any) -> ProviderClient:
    """The client for the `etl.models.DataProvider` with this code.

    `options` override the defaults taken from settings (max_attempts,
    backoff_base, backoff_max, sleep, rate_window, ...); tests use them."""
    from etl.models import DataProvider

    try:
        provider = DataProvider.objects.get(code=provider_code)
    except DataProvider.DoesNotExist:
        raise ProviderError(f"Unknown data provider {provider_code!r}", permanent=True) from None
    return client_class(provider_code)(provider, **options)
