"""Sample data true to the markets: crypto trades every day, the exchanges on their real
trading days, taker buy volume varies; after the demo's pipeline every crypto series has
its window features past warm-up and a varying delta."""

from __future__ import annotations

import csv
import random
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from django.db import connection

from batchimport import samples
from batchimport.parsing import Layout


def daily_dates(**kw) -> list[date]:
    bars = samples.bars(rng=random.Random(3), start=datetime(2023, 1, 2), step=timedelta(days=1), **kw)
    return [bar.day.date() for bar in bars]


def test_crypto_bars_come_every_day_and_stocks_on_their_exchanges_trading_days():
    crypto = daily_dates(count=30, calendar_code="24/7")
    assert [(b - a).days for a, b in zip(crypto, crypto[1:], strict=False)] == [1] * 29
    nyse = daily_dates(count=40, calendar_code="XNYS")
    assert date(2023, 1, 16) not in nyse and date(2023, 2, 20) not in nyse  # MLK day, Presidents' day
    assert all(d.weekday() < 5 for d in nyse)
    bist = samples.bars(
        rng=random.Random(3), start=datetime(2023, 4, 17), count=10, step=timedelta(days=1), calendar_code="XIST"
    )
    days = [bar.day.date() for bar in bist]
    assert date(2023, 4, 20) in days  # the bayram's eve trades half a day
    assert date(2023, 4, 21) not in days  # Ramazan Bayrami


def test_taker_buy_volume_varies_and_stays_inside_the_volume(tmp_path):
    summary = samples.write_file(
        tmp_path / "BTC.csv", Layout.BINANCE, ticker="BTC", rows=60, with_header=False, calendar_code="24/7"
    )
    rows = [r for r in csv.reader(open(summary.path)) if r]
    volume = np.array([float(r[5]) for r in rows])
    taker = np.array([float(r[9]) for r in rows])
    share = taker / volume
    assert (share > 0).all() and (share < 1).all()
    assert share.std() > 0.05
    stamps = [datetime.fromtimestamp(int(r[0]) / 1000, tz=UTC) for r in rows]
    assert {(b - a) for a, b in zip(stamps, stamps[1:], strict=False)} == {timedelta(days=1)}


FEATURES = ("volatility_20", "volatility_50", "atr_14", "rsi_14", "sma_20", "sma_50", "ema_20")


def v2_rows(market: str) -> list[dict]:
    """market_data_v2's daily rows of a market, read with SQL: batchimport imports no enrichment code."""
    with connection.cursor() as cur:
        cur.execute(
            f"""SELECT v.symbol_id, v.ts, v.quality_flags, v.taker_buy_volume, v.delta, v.buy_sell_ratio,
                       {", ".join("v." + f for f in FEATURES)}
                FROM market_data_v2 v JOIN symbols s ON s.id = v.symbol_id JOIN markets m ON m.id = s.market_id
                WHERE m.code = %s AND v.timeframe = '1d' ORDER BY v.symbol_id, v.ts""",  # noqa: S608 - constants
            [market],
        )
        names = [c.name for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


@pytest.mark.django_db
def test_after_the_demo_pipeline_crypto_series_have_their_window_features(data_root):
    from etl.services import pipeline_run, reference_data_bootstrap

    reference_data_bootstrap()  # as `make demo` does first
    samples.write_sample_folder(data_root / "DATA", seed=42, tickers=4, days=250, defect_every=50)
    pipeline_run(continue_on_failure=True, options={"path": str(data_root / "DATA"), "overwrite_mismatched": True})
    crypto = v2_rows("BINANCE")
    by_symbol: dict[int, list[dict]] = {}
    for row in crypto:
        by_symbol.setdefault(row["symbol_id"], []).append(row)
    assert len(by_symbol) == 4
    for symbol_id, rows in by_symbol.items():
        for name in FEATURES:
            assert all(r[name] is not None for r in rows[60:]), (symbol_id, name)
        assert not any(r["quality_flags"] & 1 for r in rows[1:])  # no gap anywhere: every day has its bar
    with_taker = [r for r in crypto if r["taker_buy_volume"] is not None]
    assert len({round(r["delta"], 6) for r in with_taker if r["delta"] is not None}) > 100
    assert len({round(r["buy_sell_ratio"], 6) for r in with_taker if r["buy_sell_ratio"] is not None}) > 100
    for market in ("BIST", "NASDAQ", "NYSE"):
        stocks = v2_rows(market)
        assert stocks and not [r for r in stocks if r["quality_flags"] & 1], market
