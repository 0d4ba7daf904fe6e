"""What we know about a symbol without the network: the reference data (market,
asset class, pair) and the local catalogue CSV."""

from __future__ import annotations

import csv
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings

from enrichment.assets.services.enrich_options import LOCAL_REFERENCE
from enrichment.assets.services.mapping import crypto_pair, symbol_kind
from enrichment.providers.base import INFO_FIELDS, AssetInfo
from etl.models import Symbol


@lru_cache(maxsize=4)
def _catalogue(path: str, mtime: float) -> dict[tuple[str, str], dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return {
            (row.get("ticker", "").strip().upper(), row.get("market", "").strip().upper()): row
            for row in csv.DictReader(fh)
        }


def catalogue_path() -> Path:
    """A CSV of known metadata (ticker,market,name,sector,industry,country,currency,...):
    settings.ENRICHMENT_CATALOGUE, else DATA_ROOT/sample/catalogue.csv."""
    configured = settings.ENRICHMENT_CATALOGUE
    return Path(configured) if configured else Path(settings.DATA_ROOT) / "sample" / "catalogue.csv"


def local_info(symbol: Symbol) -> AssetInfo:
    """What the reference data (market, asset class, pair) and the local catalogue know; no network."""
    kind = symbol_kind(symbol)
    values: dict[str, Any] = {}
    if kind == "crypto":
        base, quote = crypto_pair(symbol)
        values["currency"] = quote
        values["category"] = "Cryptocurrency"
    else:
        values["currency"] = symbol.market.currency
        if kind in {"bist", "us"}:
            values["country"] = symbol.market.country
        if symbol.asset_class_id:
            values["category"] = symbol.asset_class.name
    path = catalogue_path()
    if path.is_file():
        row = _catalogue(str(path), path.stat().st_mtime).get((symbol.ticker.upper(), symbol.market.code))
        for name in INFO_FIELDS:
            if row and (row.get(name) or "").strip():
                values[name] = row[name].strip()
        if "market_cap" in values:
            try:
                values["market_cap"] = Decimal(str(values["market_cap"]))
            except ArithmeticError:
                values.pop("market_cap")
    return AssetInfo(provider=LOCAL_REFERENCE, provider_symbol=symbol.ticker, **values)
