"""Symbol mapping across providers: how each vendor spells one of our symbols.

Defaults are inferred (BTC/USDT -> BTCUSDT on Binance, BTC-USD on Yahoo,
X:BTCUSD on Polygon, BTC on CoinMarketCap; THYAO on BIST -> THYAO.IS on Yahoo;
AAPL -> AAPL on Yahoo, Polygon and Alpha Vantage; EURUSD -> EURUSD=X on Yahoo,
C:EURUSD on Polygon) and stored with origin "inferred"; an operator's edit
(origin "manual") is never overwritten. A mapping can be checked against its
provider on demand.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext

from enrichment.providers.clients import get_client
from enrichment.providers.errors import ProviderError
from etl.errors import DomainError
from etl.models import DataProvider, Symbol, SymbolMapping

CRYPTO_QUOTES = ("USDT", "USDC", "BUSD", "FDUSD", "USD", "TRY", "EUR", "BTC", "ETH", "BNB")
US_MARKETS = {"NASDAQ", "NYSE"}


def symbol_kind(symbol: Symbol) -> str:
    """crypto, fx, bist, us or other: what decides how providers spell the symbol."""
    asset_class = symbol.asset_class.code if symbol.asset_class_id else ""
    market = symbol.market.code
    if asset_class == "CRYPTO" or market == "BINANCE":
        return "crypto"
    if asset_class == "FOREX" or market == "FOREX_MARKET":
        return "fx"
    if market == "BIST" or asset_class == "STOCK_BIST":
        return "bist"
    if market in US_MARKETS:
        return "us"
    return "other"


def crypto_pair(symbol: Symbol) -> tuple[str, str]:
    """(base, quote) from the symbol's currencies, else from the ticker's shape."""
    ticker = symbol.ticker.upper().strip()
    for sep in ("/", "-", "_"):
        if sep in ticker:
            base, quote = ticker.split(sep, 1)
            return base, quote or "USDT"
    if symbol.base_currency:
        return symbol.base_currency.upper(), (symbol.quote_currency or "USDT").upper()
    for quote in CRYPTO_QUOTES:
        if ticker.endswith(quote) and len(ticker) > len(quote):
            return ticker[: -len(quote)], quote
    return ticker, (symbol.quote_currency or "USDT").upper()


def mapping_infer(*, symbol: Symbol, provider_code: str) -> str | None:
    """How `provider_code` most likely spells `symbol`; None where it does not list it."""
    kind = symbol_kind(symbol)
    ticker = symbol.ticker.upper().strip()
    if kind == "crypto":
        base, quote = crypto_pair(symbol)
        usd = "USD" if quote in {"USDT", "USDC", "BUSD", "FDUSD", "USD"} else quote
        return {
            "BINANCE": f"{base}{quote if quote != 'USD' else 'USDT'}",
            "YAHOO_FINANCE": f"{base}-{usd}",
            "POLYGON": f"X:{base}{usd}",
            "COINMARKETCAP": base,
        }.get(provider_code)
    if kind == "bist":
        bare = ticker.removesuffix(".IS").removesuffix(".E")
        return {"YAHOO_FINANCE": f"{bare}.IS"}.get(provider_code)
    if kind == "us":
        return {
            "YAHOO_FINANCE": ticker.replace(".", "-"),  # BRK.B -> BRK-B
            "POLYGON": ticker,
            "ALPHA_VANTAGE": ticker,
        }.get(provider_code)
    if kind == "fx":
        pair = ticker.replace("/", "").replace("=X", "")
        return {"YAHOO_FINANCE": f"{pair}=X", "POLYGON": f"C:{pair}"}.get(provider_code)
    return None


@dataclass(frozen=True, slots=True)
class MappingResult:
    considered: int
    created: int


def mappings_ensure(
    *, symbols: QuerySet[Symbol] | None = None, provider_codes: list[str] | None = None
) -> MappingResult:
    """Store the inferred mapping for every (symbol, provider) pair that has none.
    One INSERT … ON CONFLICT DO NOTHING per call: existing and manual mappings stay."""
    providers = list(
        DataProvider.objects.filter(code__in=provider_codes) if provider_codes else DataProvider.objects.all()
    )
    qs = (symbols if symbols is not None else Symbol.objects.all()).select_related("market", "asset_class")
    rows = []
    considered = 0
    for symbol in qs.iterator(chunk_size=2000):
        for provider in providers:
            provider_symbol = mapping_infer(symbol=symbol, provider_code=provider.code)
            if provider_symbol:
                considered += 1
                rows.append(
                    SymbolMapping(
                        symbol=symbol,
                        provider=provider,
                        provider_symbol=provider_symbol,
                        origin=SymbolMapping.Origin.INFERRED,
                    )
                )
    before = SymbolMapping.objects.count()
    SymbolMapping.objects.bulk_create(rows, batch_size=5000, ignore_conflicts=True)
    return MappingResult(considered=considered, created=SymbolMapping.objects.count() - before)


def provider_symbol_for(*, symbol: Symbol, provider_code: str) -> str | None:
    """The stored mapping if there is one, else the inferred spelling."""
    stored = (
        SymbolMapping.objects.filter(symbol=symbol, provider__code=provider_code)
        .values_list("provider_symbol", flat=True)
        .first()
    )
    return stored or mapping_infer(symbol=symbol, provider_code=provider_code)


def mapping_validate(*, mapping: SymbolMapping, client_options: dict | None = None) -> bool:
    """Ask the provider whether it knows the mapped symbol; record the answer.
    Raises DomainError when the provider could not answer (down, throttled)."""
    try:
        valid = get_client(mapping.provider.code, **(client_options or {})).validate_symbol(
            provider_symbol=mapping.provider_symbol
        )
    except ProviderError as exc:
        raise DomainError(
            gettext("Could not check %(symbol)s on %(provider)s: %(error)s")
            % {"symbol": mapping.provider_symbol, "provider": mapping.provider.code, "error": exc.message},
            code="provider_unavailable",
        ) from None
    SymbolMapping.objects.filter(pk=mapping.pk).update(is_valid=valid, validated_at=timezone.now())
    mapping.is_valid = valid
    return valid


def mapping_edit_record(*, mapping: SymbolMapping, spelling_changed: bool) -> SymbolMapping:
    """Save an operator's edit of a mapping; a new spelling makes it manual (never overwritten
    by inference) and clears its validation until it is checked again."""
    if spelling_changed:
        mapping.origin = SymbolMapping.Origin.MANUAL
        mapping.is_valid = None
        mapping.validated_at = None
    mapping.save()
    return mapping


@dataclass(frozen=True, slots=True)
class ValidationTally:
    valid: int
    invalid: int
    refused: tuple[str, ...]  # why the provider could not answer, one line per mapping


def mappings_validate(*, mappings: Iterable[SymbolMapping], client_options: dict | None = None) -> ValidationTally:
    """`mapping_validate` for each mapping; a provider that cannot answer is noted, not fatal."""
    valid = invalid = 0
    refused: list[str] = []
    for one in mappings:
        try:
            if mapping_validate(mapping=one, client_options=client_options):
                valid += 1
            else:
                invalid += 1
        except DomainError as exc:
            refused.append(exc.message)
    return ValidationTally(valid=valid, invalid=invalid, refused=tuple(refused))
