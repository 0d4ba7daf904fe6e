"""Which client serves which data provider.

`get_client("BINANCE")` builds the client for a `DataProvider` record: base URL,
timeout and rate budget from the record, API key from the environment.
"""

from __future__ import annotations

from typing import Any

from enrichment.providers.alphavantage import AlphaVantageClient
from enrichment.providers.base import ProviderClient
from enrichment.providers.binance import BinanceClient
from enrichment.providers.coinmarketcap import CoinMarketCapClient
from enrichment.providers.errors import FailureReason, ProviderError
from enrichment.providers.polygon import PolygonClient
from enrichment.providers.yahoo import YahooClient
from etl.models import DataProvider

CLIENTS: dict[str, type[ProviderClient]] = {
    client.code: client
    for client in (YahooClient, BinanceClient, PolygonClient, CoinMarketCapClient, AlphaVantageClient)
}


def client_class(provider_code: str) -> type[ProviderClient]:
    try:
        return CLIENTS[provider_code]
    except KeyError:
        raise ProviderError(
            f"No client for provider {provider_code!r}", permanent=True, reason=FailureReason.UNSUPPORTED
        ) from None


def get_client(provider_code: str, **options: Any) -> ProviderClient:
    """The client for the `etl.models.DataProvider` with this code.

    `options` override the defaults taken from settings (max_attempts,
    backoff_base, backoff_max, sleep, rate_window, ...); tests use them."""
    try:
        provider = DataProvider.objects.get(code=provider_code)
    except DataProvider.DoesNotExist:
        raise ProviderError(f"Unknown data provider {provider_code!r}", permanent=True) from None
    return client_class(provider_code)(provider, **options)
