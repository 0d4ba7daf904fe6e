"""Work that any of several providers can do, tried in priority order: a
provider whose circuit is open fails fast and the next one is asked."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from enrichment.providers import client_class, get_client
from enrichment.providers.base import ProviderCandle, ProviderClient, ProviderError

T = TypeVar("T")


def providers_in_priority(*, capability: str, codes: list[str] | None = None) -> list[str]:
    """Enabled providers (with their key, where one is needed) able to do `capability`
    ("info" or "candles"), lowest priority number first."""
    from etl.models import DataProvider

    rows = DataProvider.objects.filter(is_enabled=True).order_by("priority", "code")
    if codes is not None:
        rows = rows.filter(code__in=codes)
    out = []
    for provider in rows:
        try:
            cls = client_class(provider.code)
        except ProviderError:
            continue
        if not getattr(cls, f"supports_{capability}", False):
            continue
        if provider.requires_api_key and not provider.has_api_key:
            continue
        out.append(provider.code)
    return out


def call_with_fallback(
    *, codes: list[str], fn: Callable[[ProviderClient], T], client_options: dict | None = None
) -> tuple[str, T]:
    """(code, result) from the first provider in `codes` whose call succeeds.
    Raises the last ProviderError, naming every provider's failure, when none does."""
    errors: list[str] = []
    for code in codes:
        try:
            return code, fn(get_client(code, **(client_options or {})))
        except ProviderError as exc:
            errors.append(f"{code}: {exc.message}")
    raise ProviderError("; ".join(errors) or "no provider can do this", reason="all_failed")


def candles_fetch_with_fallback(
    *,
    symbol,
    timeframe: str,
    start: datetime,
    end: datetime,
    codes: list[str] | None = None,
    client_options: dict | None = None,
) -> tuple[str, list[ProviderCandle]]:
    """Candles for an `etl.models.Symbol` from the first candle provider that has
    a mapping for it and answers, in priority order."""
    from enrichment.services.mapping import provider_symbol_for

    usable = []
    mapped: dict[str, str] = {}
    for code in providers_in_priority(capability="candles", codes=codes):
        provider_symbol = provider_symbol_for(symbol=symbol, provider_code=code)
        if provider_symbol:
            usable.append(code)
            mapped[code] = provider_symbol
    return call_with_fallback(
        codes=usable,
        client_options=client_options,
        fn=lambda client: client.fetch_candles(
            provider_symbol=mapped[client.code], timeframe=timeframe, start=start, end=end
        ),
    )
