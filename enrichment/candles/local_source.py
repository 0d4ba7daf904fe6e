"""The default candle source: the raw candles already imported into `market_data`. All a
machine without network needs."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from django.db import connection

from enrichment.candles.candle_frames import empty_frame, normalise
from etl.models import Symbol

# The code of the local source (remote sources are named by their provider code).
MARKET_DATA_SOURCE = "market_data"


class MarketDataSource:
    """The raw candles already imported into `market_data`, linked to the symbol by the sync.
    Binance kline extras kept by the import (taker buy volume, quote volume, trades) come along."""

    code = MARKET_DATA_SOURCE

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
