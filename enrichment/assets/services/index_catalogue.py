"""The offline catalogue source: names, industries, countries and websites of the
constituents of major stock indices, from the `pytickersymbols` package (the data
ships inside its wheel, so no network is needed).

Indices: S&P 500, S&P 100, S&P 600, NASDAQ 100, Dow Jones, FTSE 100, DAX, MDAX,
SDAX, TecDAX, CAC 40, CAC Mid 60, EURO STOXX 50, IBEX 35, AEX, BEL 20, Switzerland
20, OMX Helsinki 25, OMX Stockholm 30, NIKKEI 225. Not BIST, no crypto, no FX.
Symbols are matched by their Yahoo spelling (AAPL, SAP.DE, VOD.L). Its package
version is the data version every value it gives is recorded with. It ranks below
every live provider and only fills blank fields (see enrich._merge).
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import version
from typing import Any

from pytickersymbols import PyTickerSymbols

from enrichment.assets.services.enrich_options import CATALOGUE
from enrichment.providers.base import AssetInfo

# The package's industry lists mix sectors and industries; these words are sectors,
# mapped to one spelling (Yahoo's sector names).
SECTORS = {
    "information technology": "Technology",
    "technology": "Technology",
    "financials": "Financial Services",
    "financial services": "Financial Services",
    "health care": "Healthcare",
    "healthcare": "Healthcare",
    "energy": "Energy",
    "industrials": "Industrials",
    "consumer discretionary": "Consumer Cyclical",
    "consumer cyclicals": "Consumer Cyclical",
    "consumer staples": "Consumer Defensive",
    "consumer non-cyclicals": "Consumer Defensive",
    "utilities": "Utilities",
    "materials": "Basic Materials",
    "basic materials": "Basic Materials",
    "real estate": "Real Estate",
    "communication services": "Communication Services",
}
COUNTRIES = {
    "united states": "US",
    "united kingdom": "GB",
    "germany": "DE",
    "france": "FR",
    "netherlands": "NL",
    "belgium": "BE",
    "switzerland": "CH",
    "spain": "ES",
    "italy": "IT",
    "ireland": "IE",
    "finland": "FI",
    "sweden": "SE",
    "japan": "JP",
    "luxembourg": "LU",
    "china": "CN",
    "australia": "AU",
    "mexico": "MX",
    "canada": "CA",
    "israel": "IL",
    "singapore": "SG",
    "bermuda": "BM",
    "argentina": "AR",
}
# Many US constituents carry their headquarters ("Jackson, Mississippi") instead of a country.
US_STATES = frozenset(
    """alabama alaska arizona arkansas california colorado connecticut delaware florida georgia hawaii idaho
    illinois indiana iowa kansas kentucky louisiana maine maryland massachusetts michigan minnesota mississippi
    missouri montana nebraska nevada ohio oklahoma oregon pennsylvania tennessee texas utah vermont virginia
    washington wisconsin wyoming d.c.""".split()
    + ["new hampshire", "new jersey", "new mexico", "new york", "north carolina", "north dakota"]
    + ["rhode island", "south carolina", "south dakota", "west virginia", "puerto rico"]
)


def catalogue_version() -> str:
    """The data version of every value the catalogue gives."""
    return f"pytickersymbols {version('pytickersymbols')}"


def country_code(place: str) -> str:
    """ISO code from the package's country or headquarters text; blank when unknown."""
    text = (place or "").strip().casefold()
    if text in COUNTRIES:
        return COUNTRIES[text]
    last = text.rsplit(",", 1)[-1].strip()
    if last in US_STATES:
        return "US"
    return COUNTRIES.get(last, "")


def _sector_and_industry(industries: list[str]) -> tuple[str, str]:
    sector = next((SECTORS[i.casefold()] for i in industries if i.casefold() in SECTORS), "")
    industry = next((i for i in industries if i.casefold() not in SECTORS), "")
    return sector, industry[:150]


def _values(stock: dict[str, Any], listing: dict[str, Any]) -> dict[str, Any]:
    sector, industry = _sector_and_industry(stock.get("industries") or [])
    website = ((stock.get("metadata") or {}).get("website") or "").strip()
    if website and "//" not in website:
        website = f"https://{website}"
    return {
        "name": (stock.get("name") or "").strip()[:200],
        "sector": sector,
        "industry": industry,
        "country": country_code(stock.get("country") or ""),
        "currency": (listing.get("currency") or "").strip().upper()[:8],
        "website": website[:200] if " " not in website else "",
        "category": "Equity",
    }


@lru_cache(maxsize=1)
def _by_yahoo_symbol() -> dict[str, dict[str, Any]]:
    """Yahoo spelling -> field values, built once per process (about 1,800 companies)."""
    out: dict[str, dict[str, Any]] = {}
    for stock in PyTickerSymbols().get_all_stocks():
        for listing in stock.get("symbols") or []:
            yahoo = (listing.get("yahoo") or "").strip().upper()
            if yahoo and yahoo not in out:
                out[yahoo] = _values(stock, listing)
    return out


def catalogue_infos(yahoo_symbols: list[str]) -> dict[str, AssetInfo]:
    """What the catalogue knows of each of `yahoo_symbols` (left out: unknown to it)."""
    known = _by_yahoo_symbol()
    data_version = catalogue_version()
    return {
        spelled: AssetInfo(
            provider=CATALOGUE,
            provider_symbol=spelled,
            extra={"data_version": data_version},
            **known[spelled.upper()],
        )
        for spelled in yahoo_symbols
        if spelled.upper() in known
    }
