"""Work that any of several providers can do, tried in priority order: a
provider whose circuit is open fails fast and the next one is asked."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TypeVar

from enrichment.providers.base import ProviderCandle, ProviderClient
from enrichment.providers.clients import client_class, get_client
from enrichment.providers.errors import FailureReason, ProviderError
from etl.models import DataProvider

T = TypeVar("T")


def providers_in_priority(*, capability: str, codes: list[str] | None = None) -> list[str]:
    """Enabled providers (with their key, where one is needed) able to do `capability`
    ("info" or "candles"), lowest priority number first."""
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
    raise ProviderError("; ".join(errors) or "no provider can do this", reason=FailureReason.ALL_FAILED)


def candles_fetch_with_fallback(
    *,
    provider_symbols: Mapping[str, str],
    timeframe: str,
    start: datetime,
    end: datetime,
    codes: list[str] | None = None,
    client_options: dict | None = None,
) -> tuple[str, list[ProviderCandle]]:
    """Candles from the first candle provider, in priority order, that has a spelling of
    the symbol in `provider_symbols` (provider code -> mapped symbol, from the caller's
    symbol mapping) and answers."""
    usable = [code for code in providers_in_priority(capability="candles", codes=codes) if provider_symbols.get(code)]
    return call_with_fallback(
        codes=usable,
        client_options=client_options,
        fn=lambda client: client.fetch_candles(
            provider_symbol=provider_symbols[client.code], timeframe=timeframe, start=start, end=end
        ),
    )
