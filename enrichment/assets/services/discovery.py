"""Symbol discovery from a provider listing (Binance exchangeInfo).

New symbols are created the way symbol sync creates them: one
INSERT … ON CONFLICT (ticker, market) DO NOTHING, so a discovery racing a sync
(or another discovery) creates each symbol once. Their Binance mapping is stored
alongside, the same way."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from django.db import transaction
from django.utils.translation import gettext

from enrichment.providers.clients import get_client
from enrichment.providers.errors import ProviderError
from etl.errors import DomainError
from etl.models import AssetClass, DataProvider, Market, Symbol, SymbolMapping, SymbolSource


@dataclass(frozen=True, slots=True)
class DiscoverResult:
    provider: str
    listed: int
    created: int
    existing: int
    mappings_created: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def symbols_discover(
    *, provider_code: str = "BINANCE", quote_assets: tuple[str, ...] = ("USDT",), client_options: dict | None = None
) -> DiscoverResult:
    """Create a symbol for every trading perpetual the provider lists (quoted in `quote_assets`)."""
    if provider_code != "BINANCE":
        raise DomainError(
            gettext("Discovery is available from BINANCE only, not %(provider)s") % {"provider": provider_code},
            code="unsupported",
        )
    try:
        market = Market.objects.get(code="BINANCE")
    except Market.DoesNotExist:
        raise DomainError(
            gettext("Market BINANCE is missing: bootstrap the reference data first"), code="no_market"
        ) from None
    try:
        listing = get_client(provider_code, **(client_options or {})).list_symbols()
    except ProviderError as exc:
        raise DomainError(
            gettext("Could not read the %(provider)s listing: %(error)s")
            % {"provider": provider_code, "error": exc.message},
            code="provider_unavailable",
        ) from None
    rows = [
        r
        for r in listing
        if r.get("contractType", "PERPETUAL") == "PERPETUAL"
        and (not quote_assets or r.get("quoteAsset") in quote_assets)
    ]
    crypto = AssetClass.objects.filter(code="CRYPTO").first()
    provider = DataProvider.objects.get(code=provider_code)
    tickers = [r["symbol"].upper() for r in rows]
    with transaction.atomic():
        before = Symbol.objects.filter(market=market, ticker__in=tickers).count()
        Symbol.objects.bulk_create(
            [
                Symbol(
                    ticker=r["symbol"].upper(),
                    market=market,
                    asset_class=crypto,
                    base_currency=str(r.get("baseAsset", ""))[:16],
                    quote_currency=str(r.get("quoteAsset", ""))[:16],
                    source=SymbolSource.DISCOVERED,
                    inference_confidence=1.0,
                )
                for r in rows
            ],
            batch_size=2000,
            ignore_conflicts=True,
        )
        ids = dict(Symbol.objects.filter(market=market, ticker__in=tickers).values_list("ticker", "pk"))
        mappings_before = SymbolMapping.objects.filter(provider=provider, symbol_id__in=ids.values()).count()
        SymbolMapping.objects.bulk_create(
            [SymbolMapping(symbol_id=ids[t], provider=provider, provider_symbol=t) for t in tickers if t in ids],
            batch_size=2000,
            ignore_conflicts=True,
        )
        mappings_after = SymbolMapping.objects.filter(provider=provider, symbol_id__in=ids.values()).count()
    created = len(ids) - before
    return DiscoverResult(
        provider=provider_code,
        listed=len(rows),
        created=created,
        existing=len(rows) - created,
        mappings_created=mappings_after - mappings_before,
    )
