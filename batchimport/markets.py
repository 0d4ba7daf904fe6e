"""The four markets the scraper writes, in one table: every other place (model
choices, folder names, venue codes, SLAs, priority, command choices, error
messages) derives from `MARKETS`. Plain data, no ORM (the parser reads it).

The time zone is not repeated here: it is the venue's, from etl's reference data.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.functional import lazy
from django.utils.translation import gettext

from etl.reference_data import MARKETS as VENUES

_VENUE_TIMEZONES = {venue["code"]: venue["timezone"] for venue in VENUES}


@dataclass(frozen=True, slots=True)
class MarketSpec:
    key: str  # the import job's market (ImportJob.market, the folder's word upper-cased)
    folder: str  # the folder name under the scraper's DATA folder
    venue: str  # etl's Market.code, stored in market_data.market
    sla_minutes: int  # a market job's SLA target, from the old system

    @property
    def timezone(self) -> str:
        """The venue's IANA zone (naive intraday stamps are read in it)."""
        return _VENUE_TIMEZONES[self.venue]

    @property
    def priority(self) -> int:
        """Position in the all-markets job's order (0 first)."""
        return MARKETS.index(self)


# In the all-markets job's priority order.
MARKETS: tuple[MarketSpec, ...] = (
    MarketSpec(key="BIST", folder="BIST", venue="BIST", sla_minutes=45),
    MarketSpec(key="CRYPTO", folder="Crypto", venue="BINANCE", sla_minutes=20),
    MarketSpec(key="NASDAQ", folder="NASDAQ", venue="NASDAQ", sla_minutes=25),
    MarketSpec(key="NYSE", folder="NYSE", venue="NYSE", sla_minutes=25),
)
ALL_MARKETS_SLA_MINUTES = 120

_BY_NAME = {name.upper(): spec for spec in MARKETS for name in (spec.key, spec.folder)}

MARKET_KEYS: tuple[str, ...] = tuple(spec.key for spec in MARKETS)
KEYS_TEXT = ", ".join(MARKET_KEYS)  # "BIST, CRYPTO, NASDAQ, NYSE" for messages


def _folders_text() -> str:
    return gettext("%(folders)s or %(last)s") % {
        "folders": ", ".join(spec.folder for spec in MARKETS[:-1]),
        "last": MARKETS[-1].folder,
    }


# "BIST, Crypto, NASDAQ or NYSE", in the language of the message it is put in.
FOLDERS_TEXT = lazy(_folders_text, str)()


def market_named(name: str) -> MarketSpec | None:
    """The market a key or folder name (any case) stands for, or None."""
    return _BY_NAME.get(str(name).strip().upper())


def market_spec(key: str) -> MarketSpec:
    """The market of a job's key (known to be valid)."""
    return _BY_NAME[key]
