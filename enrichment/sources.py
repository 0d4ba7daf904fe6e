"""Candle sources behind one interface.

A source returns a DataFrame: `ts` (UTC, bar open time) plus the candle columns it
has (`enrichment.models.candles.CANDLE_COLUMNS`; absent ones are NULL). The local
`market_data` table is the default and all a machine without network needs; the
remote adapters wrap the provider clients of `enrichment.providers`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import numpy as np
import pandas as pd
from django.db import connection

from enrichment.models.candles import CANDLE_COLUMNS
from etl.errors import DomainError
from etl.models import Symbol

LOCAL = "market_data"


class CandleSource(Protocol):
    code: str

    def fetch(self, *, symbol: Symbol, timeframe: str, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        """Candles with start <= ts < end (either bound may be None), sorted by ts."""
        ...


def empty_frame() -> pd.DataFrame:
    frame = pd.DataFrame({"ts": pd.Series([], dtype="datetime64[ns, UTC]")})
    for col in CANDLE_COLUMNS:
        frame[col] = pd.Series([], dtype="float64")
    return frame


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """All candle columns present as float64, ts as UTC, sorted, one row per ts (the last wins)."""
    out = frame.copy()
    out["ts"] = pd.to_datetime(out["ts"], utc=True)
    for col in CANDLE_COLUMNS:
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64") if col in out else np.nan
    out = out.sort_values("ts", kind="stable").drop_duplicates("ts", keep="last").reset_index(drop=True)
    return out[["ts", *CANDLE_COLUMNS]]


class MarketDataSource:
    """The raw candles already imported into `market_data`, linked to the symbol by the sync.
    Binance kline extras kept by the import (taker buy volume, quote volume, trades) come along."""

    code = LOCAL

    def fetch(
        self,
        *,
        symbol: Symbol,
        timeframe: str,
        start: datetime | None = None,
        end: datetime | None = None,
        changed_since: datetime | None = None,
    ) -> pd.DataFrame:
        sql = [
            "SELECT ts, open::float8, high::float8, low::float8, close::float8, volume::float8,",
            " COALESCE(extra->>'taker_buy_volume', extra->>'taker_buy_base_volume'),",
            " extra->>'quote_volume', COALESCE(extra->>'trades', extra->>'count')",
            " FROM market_data WHERE symbol_id = %s AND timeframe = %s",
        ]
        params: list = [symbol.pk, timeframe]
        for clause, value in ((" AND ts >= %s", start), (" AND ts < %s", end), (" AND updated_at > %s", changed_since)):
            if value is not None:
                sql.append(clause)
                params.append(value)
        sql.append(" ORDER BY ts")
        with connection.cursor() as cur:
            cur.execute("".join(sql), params)
            rows = cur.fetchall()
        if not rows:
            return empty_frame()
        frame = pd.DataFrame(
            rows,
            columns=["ts", "open", "high", "low", "close", "volume", "taker_buy_volume", "quote_volume", "trades"],
        )
        return normalise(frame)

    def latest_change(self, *, symbol: Symbol, timeframe: str) -> datetime | None:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT max(updated_at) FROM market_data WHERE symbol_id = %s AND timeframe = %s",
                [symbol.pk, timeframe],
            )
            return cur.fetchone()[0]


_SOURCES: dict[str, CandleSource] = {LOCAL: MarketDataSource()}


def register_source(source: CandleSource) -> None:
    _SOURCES[source.code] = source


def get_source(code: str) -> CandleSource:
    _load_remote_sources()
    try:
        return _SOURCES[code]
    except KeyError:
        raise DomainError(f"unknown candle source {code!r}; known: {', '.join(sorted(_SOURCES))}") from None


def source_codes() -> list[str]:
    _load_remote_sources()
    return sorted(_SOURCES)


def _load_remote_sources() -> None:
    """The remote adapters need the provider clients; without them only the local source exists."""
    if len(_SOURCES) > 1:
        return
    try:
        from enrichment import sources_remote
    except ImportError:
        return
    sources_remote.register_all()
