"""Candle sources by code: the local `market_data` table (the default) and the remote
adapters over the provider clients, plus "auto", which tries the providers in order."""

from __future__ import annotations

from django.utils.translation import gettext

from enrichment.candles.candle_frames import CandleSource
from enrichment.candles.local_source import MARKET_DATA_SOURCE, MarketDataSource
from enrichment.candles.remote_sources import BinanceFuturesSource, FallbackSource, ProviderCandleSource
from etl.errors import DomainError

_REMOTE: dict[str, CandleSource] = {
    source.code: source
    for source in (BinanceFuturesSource(), ProviderCandleSource("YAHOO_FINANCE"), ProviderCandleSource("POLYGON"))
}
_SOURCES: dict[str, CandleSource] = {
    MARKET_DATA_SOURCE: MarketDataSource(),
    **_REMOTE,
    FallbackSource.code: FallbackSource(_REMOTE),
}


def register_source(source: CandleSource) -> None:
    """Add (or replace) a source; tests register fakes."""
    _SOURCES[source.code] = source


def get_source(code: str) -> CandleSource:
    try:
        return _SOURCES[code]
    except KeyError:
        raise DomainError(
            gettext("unknown candle source %(source)s; known: %(known)s")
            % {"source": repr(code), "known": ", ".join(sorted(_SOURCES))}
        ) from None


def source_codes() -> list[str]:
    return sorted(_SOURCES)
