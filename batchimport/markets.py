"""The four markets the scraper writes, in one table: every other place (model
choices, folder names, venue codes, command choices, error messages, the import
settings' defaults) derives from `MARKETS`. Plain data, no ORM (the parser reads it).

The time zone is not repeated here: it is the venue's, from etl's reference data.
The import settings here are the old system's defaults (its batch-processing
guide, "Performance Targets" and "Data Flow"); what a job uses comes from the
editable `import_market_settings` table, which the reference-data bootstrap fills
with these values (batchimport.services.market_settings).
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
    batch_size: int  # rows per staging batch (COPY, progress and cancel point)
    max_concurrency: int  # worker tasks sharing a market job's files
    sla_minutes: int  # a market job's SLA target
    expected_rows_per_second: int  # the rate the market's imports should reach
    priority: int  # 1 first: order of the markets (and of their files) in an all-markets job

    @property
    def timezone(self) -> str:
        """The venue's IANA zone (naive intraday stamps are read in it)."""
        return _VENUE_TIMEZONES[self.venue]


# In the all-markets job's priority order: the old system's table (batch size, concurrency,
# SLA, records/s) and its priorities 1-4. Aligned columns, so formatting is left alone.
# fmt: off
MARKETS: tuple[MarketSpec, ...] = tuple(MarketSpec(*row) for row in (
    # key       folder    venue      batch  conc.  SLA min  rows/s  priority
    ("BIST",   "BIST",   "BIST",     800,   3,     45,      800,    1),
    ("CRYPTO", "Crypto", "BINANCE",  1500,  4,     20,      1500,   2),
    ("NASDAQ", "NASDAQ", "NASDAQ",   1500,  4,     25,      1500,   3),
    ("NYSE",   "NYSE",   "NYSE",     1500,  4,     25,      1500,   4),
))
# fmt: on
# The old system's global settings: an all-markets job's SLA ("GlobalSlaTarget": 02:00:00).
ALL_MARKETS_SLA_MINUTES = 120
MAX_CONCURRENCY_LIMIT = 32  # the most worker tasks one job may ask for (API bounds, settings' check)

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
