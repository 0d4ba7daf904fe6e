"""Symbols and linked candles built directly (bulk SQL), as the sync would leave them."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from etl.models import AssetClass, Market, Symbol
from etl.services.partitions import partitions_ensure

_ts_offsets = itertools.count()


def add_symbol(ticker: str, market: str, asset_class: str | None) -> Symbol:
    return Symbol.objects.create(
        ticker=ticker,
        market=Market.objects.get(code=market),
        asset_class=AssetClass.objects.get(code=asset_class) if asset_class else None,
    )


def add_candles(*, ticker: str, market: str, value: str | None, n: int, symbol: Symbol | None) -> None:
    """n one-minute candles for ticker@market holding `value` in asset_class, linked to `symbol` (None: orphan)."""
    start = next(_ts_offsets) * 1_000_000
    origin = datetime(2000, 1, 1, tzinfo=UTC)
    partitions_ensure(
        table="market_data", first=origin + timedelta(minutes=start), last=origin + timedelta(minutes=start + n)
    )
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO market_data (ticker, market, timeframe, ts, open, high, low, close, volume,"
            " asset_class, symbol_id)"
            " SELECT %s, %s, '1m', timestamptz '2000-01-01 00:00+00' + (%s + g) * interval '1 minute',"
            " 10 + mod(g, 7), 12 + mod(g, 7), 9 + mod(g, 7), 11 + mod(g, 7), 1000 + g, %s, %s"
            " FROM generate_series(0, %s - 1) g",
            [ticker, market, start, value, symbol.pk if symbol else None, n],
        )


def market_data_checksum() -> str:
    """md5 over every column of every candle, in id order."""
    with connection.cursor() as cur:
        cur.execute("SELECT md5(coalesce(string_agg(md::text, '|' ORDER BY md.id), '')) FROM market_data md")
        return cur.fetchone()[0]


@pytest.fixture
def world(reference_data) -> Callable[[], dict[str, Symbol]]:
    """A small mixed table: BIST folder names, nulls, empties, right values,
    orphans and a symbol without a class."""
    thyao = add_symbol("THYAO", "BIST", "STOCK_BIST")
    garan = add_symbol("GARAN", "BIST", "STOCK_BIST")
    aapl = add_symbol("AAPL", "NASDAQ", "STOCK_NASDAQ")
    btc = add_symbol("BTC", "BINANCE", "CRYPTO")
    mystery = add_symbol("MYST", "NYSE", None)
    add_candles(ticker="THYAO", market="BIST", value="BIST", n=30, symbol=thyao)  # mismatched
    add_candles(ticker="GARAN", market="BIST", value=None, n=20, symbol=garan)  # null
    add_candles(ticker="GARAN", market="BIST", value="", n=5, symbol=garan)  # empty
    add_candles(ticker="GARAN", market="BIST", value="  ", n=2, symbol=garan)  # blank = empty
    add_candles(ticker="AAPL", market="NASDAQ", value="STOCK_NASDAQ", n=15, symbol=aapl)  # correct
    add_candles(ticker="AAPL", market="NASDAQ", value="NASDAQ", n=10, symbol=aapl)  # mismatched
    add_candles(ticker="BTC", market="BINANCE", value=None, n=8, symbol=btc)  # null
    add_candles(ticker="ETH", market="BINANCE", value="CRYPTO", n=6, symbol=None)  # orphan
    add_candles(ticker="MYST", market="NYSE", value=None, n=4, symbol=mystery)  # unclassified
    return {"THYAO": thyao, "GARAN": garan, "AAPL": aapl, "BTC": btc, "MYST": mystery}
