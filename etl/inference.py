"""What a (ticker, market) pair found in `market_data` says about its symbol.

Pure: no ORM, no I/O, so it is cheap to test and to run over tens of
thousands of distinct pairs. Symbol sync calls `infer_symbol` once per
distinct pair (never per candle) and writes the results set-based.

The answer carries a confidence between 0 and 1:
- 0.95  the market and the ticker shape agree (BTCUSDT on BINANCE, THYAO.IS)
- 0.85  the market decides it and the ticker looks like that market's tickers
- 0.6   the market decides it but the ticker is odd (digits, punctuation, length)
- 0.5   no usable market: venue and class guessed from the ticker shape alone
- 0.0   nothing to go on (unknown market, shapeless ticker): not created
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from django.utils.functional import lazy
from django.utils.translation import gettext, gettext_noop


def _translated(message: str, params: dict[str, object]) -> str:
    return gettext(message) % params if params else gettext(message)


# A reason is translated when someone reads it, in their language: most never are (symbol sync
# infers every pair it finds), and a gettext per pair cost ~20 µs, twice the inference itself.
_lazy_translated = lazy(_translated, str)


def _reason(message: str, **params: object) -> str:
    return _lazy_translated(message, params)


# market_data.market holds what the file said: our codes, a MIC, or the
# folder name the old importer used ('CRYPTO' for the Binance folder).
MARKET_ALIASES: dict[str, str] = {
    "BINANCE": "BINANCE",
    "CRYPTO": "BINANCE",
    "BIST": "BIST",
    "XIST": "BIST",
    "IST": "BIST",
    "BORSA_ISTANBUL": "BIST",
    "NASDAQ": "NASDAQ",
    "XNAS": "NASDAQ",
    "NMS": "NASDAQ",
    "NYSE": "NYSE",
    "XNYS": "NYSE",
    "NYQ": "NYSE",
    "FOREX": "FOREX_MARKET",
    "FOREX_MARKET": "FOREX_MARKET",
    "FX": "FOREX_MARKET",
}

# The market's own asset class and the currency prices are quoted in.
MARKET_DEFAULTS: dict[str, tuple[str, str]] = {
    "BINANCE": ("CRYPTO", "USDT"),
    "BIST": ("STOCK_BIST", "TRY"),
    "NASDAQ": ("STOCK_NASDAQ", "USD"),
    "NYSE": ("STOCK_NYSE", "USD"),
    "FOREX_MARKET": ("FOREX", ""),
}

# Binance quote assets, longest first so FDUSD wins over USD and USDT over USD.
CRYPTO_QUOTES: tuple[str, ...] = tuple(
    sorted(
        (
            "USDT",
            "FDUSD",
            "USDC",
            "BUSD",
            "TUSD",
            "USDP",
            "DAI",
            "BTC",
            "ETH",
            "BNB",
            "TRY",
            "EUR",
            "GBP",
            "BRL",
            "AUD",
            "JPY",
            "USD",
        ),
        key=len,
        reverse=True,
    )
)
# Quotes that only crypto venues use: a pair ending in one is crypto wherever it sits.
STABLECOIN_QUOTES = frozenset({"USDT", "FDUSD", "USDC", "BUSD", "TUSD", "USDP", "DAI"})

# ISO 4217 codes that trade as FX pairs, and the metals that quote like them.
FIAT = frozenset(
    "USD EUR GBP JPY CHF CAD AUD NZD TRY SEK NOK DKK PLN HUF CZK ZAR MXN BRL CNH CNY HKD SGD INR KRW RUB ILS".split()
)
METALS = frozenset({"XAU", "XAG", "XPT", "XPD"})

# Widely held US-listed ETFs; the sync adds the tickers of symbols the
# reference data already classes as ETF.
KNOWN_ETFS = frozenset(
    "SPY IVV VOO VTI QQQ DIA IWM EFA EEM VEA VWO AGG BND TLT IEF SHY LQD HYG GLD SLV USO UNG "
    "XLF XLK XLE XLV XLI XLY XLP XLU XLB XLRE XLC ARKK SMH SOXX VNQ VIG SCHD JEPI TQQQ SQQQ".split()
)

_BIST_TICKER = re.compile(r"^[A-Z][A-Z0-9]{2,5}$")
_BIST_INDEX = re.compile(r"^X[A-Z]{1,2}\d{2,3}$|^XU[A-Z0-9]{3}$")
_US_TICKER = re.compile(r"^[A-Z]{1,5}([.-][A-Z])?$")
_CRYPTO_BASE = re.compile(r"^[A-Z0-9]{2,12}$")
_YAHOO_CRYPTO = re.compile(r"^([A-Z0-9]{2,12})-(USD|USDT|EUR|BTC|ETH|TRY)$")
_FX_SEPARATED = re.compile(r"^([A-Z]{3})[/_-]?([A-Z]{3})(=X)?$")


@dataclass(frozen=True, slots=True)
class Inference:
    ticker: str
    market: str | None
    asset_class: str | None
    base_currency: str
    quote_currency: str
    confidence: float
    reason: str

    @property
    def resolved(self) -> bool:
        """Enough to create a symbol: we know which market it belongs to."""
        return self.market is not None


def normalize_ticker(raw: str) -> str:
    """The canonical spelling: trimmed, inner spaces removed, upper case."""
    return re.sub(r"\s+", "", raw or "").upper()


def canonical_market(raw: str | None) -> str | None:
    code = normalize_ticker(raw or "").replace("-", "_")
    return MARKET_ALIASES.get(code)


def split_crypto_pair(ticker: str) -> tuple[str, str] | None:
    """BTCUSDT -> (BTC, USDT); ADABTC -> (ADA, BTC); BTC-USD -> (BTC, USD)."""
    m = _YAHOO_CRYPTO.match(ticker)
    if m:
        return m.group(1), m.group(2)
    for quote in CRYPTO_QUOTES:
        if ticker.endswith(quote) and len(ticker) > len(quote):
            base = ticker[: -len(quote)]
            if _CRYPTO_BASE.match(base):
                return base, quote
    return None


def split_fx_pair(ticker: str) -> tuple[str, str] | None:
    """EURUSD, EUR/USD, EUR_USD, EURUSD=X (Yahoo), XAUUSD -> (base, quote)."""
    m = _FX_SEPARATED.match(ticker)
    if not m:
        return None
    base, quote = m.group(1), m.group(2)
    if base == quote:
        return None
    if (base in FIAT or base in METALS) and quote in FIAT:
        return base, quote
    return None


def infer_symbol(
    ticker: str,
    market: str | None,
    *,
    known_etfs: Collection[str] = KNOWN_ETFS,
    other_markets: Mapping[str, tuple[str | None, str]] | None = None,
) -> Inference:
    """Infer canonical ticker, market code, asset class, base/quote currency and
    how sure we are, from one (ticker, market) pair as found in the candles.

    `other_markets` maps codes of markets operators added (not built in here)
    to their (default asset class, currency)."""
    t = normalize_ticker(ticker)
    venue = canonical_market(market)
    if not t:
        return Inference("", None, None, "", "", 0.0, _reason(gettext_noop("empty ticker")))
    other = other_markets or {}
    if venue is None and normalize_ticker(market or "") in other:
        code = normalize_ticker(market or "")
        default_class, currency = other[code]
        return Inference(
            t,
            code,
            default_class,
            t,
            currency,
            0.7,
            _reason(gettext_noop("default asset class of market %(market)s"), market=code),
        )

    if t.endswith(".IS") and venue in (None, "BIST"):
        base = t[:-3]
        return Inference(
            base, "BIST", "STOCK_BIST", base, "TRY", 0.95, _reason(gettext_noop("Yahoo .IS suffix: Borsa Istanbul"))
        )

    if venue in _VENUE_RULES:
        return _VENUE_RULES[venue](t, venue, known_etfs)
    return _infer_without_market(t, market)


def _infer_binance(t: str, venue: str, known_etfs: Collection[str]) -> Inference:
    pair = split_crypto_pair(t)
    if pair:
        return Inference(
            t,
            venue,
            "CRYPTO",
            pair[0],
            pair[1],
            0.95,
            _reason(gettext_noop("crypto pair %(base)s/%(quote)s"), base=pair[0], quote=pair[1]),
        )
    return Inference(t, venue, "CRYPTO", t, "", 0.6, _reason(gettext_noop("crypto venue, no known quote asset")))


def _infer_forex(t: str, venue: str, known_etfs: Collection[str]) -> Inference:
    pair = split_fx_pair(t)
    if pair:
        base, quote = pair
        asset_class = "COMMODITY" if base in METALS else "FOREX"
        return Inference(
            base + quote,
            venue,
            asset_class,
            base,
            quote,
            0.95,
            _reason(gettext_noop("currency pair %(base)s/%(quote)s"), base=base, quote=quote),
        )
    return Inference(t, venue, "FOREX", "", "", 0.5, _reason(gettext_noop("FX market, ticker is not a currency pair")))


def _infer_bist(t: str, venue: str, known_etfs: Collection[str]) -> Inference:
    if _BIST_INDEX.match(t):
        return Inference(t, venue, "INDICES", "", "TRY", 0.9, _reason(gettext_noop("Borsa Istanbul index code")))
    if _BIST_TICKER.match(t):
        return Inference(t, venue, "STOCK_BIST", t, "TRY", 0.85, _reason(gettext_noop("Borsa Istanbul equity ticker")))
    return Inference(
        t, venue, "STOCK_BIST", t, "TRY", 0.6, _reason(gettext_noop("Borsa Istanbul market, unusual ticker"))
    )


def _infer_us(t: str, venue: str, known_etfs: Collection[str]) -> Inference:
    default_class, currency = MARKET_DEFAULTS[venue]
    if t in known_etfs:
        return Inference(t, venue, "ETF", t, currency, 0.95, _reason(gettext_noop("known ETF")))
    if t.startswith("^"):
        return Inference(t, venue, "INDICES", "", currency, 0.85, _reason(gettext_noop("Yahoo index symbol")))
    if _US_TICKER.match(t):
        return Inference(
            t, venue, default_class, t, currency, 0.85, _reason(gettext_noop("%(market)s equity ticker"), market=venue)
        )
    return Inference(
        t,
        venue,
        default_class,
        t,
        currency,
        0.6,
        _reason(gettext_noop("%(market)s market, unusual ticker"), market=venue),
    )


_VENUE_RULES = {
    "BINANCE": _infer_binance,
    "FOREX_MARKET": _infer_forex,
    "BIST": _infer_bist,
    "NASDAQ": _infer_us,
    "NYSE": _infer_us,
}


def _infer_without_market(t: str, market: str | None) -> Inference:
    # No usable market: only a shape no other market shares is enough.
    pair = split_crypto_pair(t)
    if pair and pair[1] in STABLECOIN_QUOTES:
        return Inference(
            t,
            "BINANCE",
            "CRYPTO",
            pair[0],
            pair[1],
            0.5,
            _reason(gettext_noop("stablecoin-quoted pair, market %(market)s"), market=repr(market)),
        )
    fx = split_fx_pair(t)
    if fx:
        base, quote = fx
        asset_class = "COMMODITY" if base in METALS else "FOREX"
        return Inference(
            base + quote,
            "FOREX_MARKET",
            asset_class,
            base,
            quote,
            0.5,
            _reason(gettext_noop("FX pair, market %(market)s"), market=repr(market)),
        )
    return Inference(
        t, None, None, "", "", 0.0, _reason(gettext_noop("unknown market %(market)s"), market=repr(market))
    )
