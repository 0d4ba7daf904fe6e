"""Generated candle series for the feature, v2 and backfill tests (no files)."""

from __future__ import annotations

import numpy as np


def random_candles(n: int, *, seed: int = 7, timeframe_seconds: int = 900, start: int = 1_700_000_000, gaps: int = 0):
    """A random-walk OHLCV series with taker volume, open interest and 8-hourly funding;
    `gaps` random holes (1-5 missing bars each) when asked."""
    rng = np.random.default_rng(seed)
    steps = np.ones(n, dtype=np.int64)
    if gaps:
        holes = rng.choice(np.arange(1, n), size=gaps, replace=False)
        steps[holes] += rng.integers(1, 6, size=gaps)
    steps[0] = 0
    ts = start + np.cumsum(steps) * timeframe_seconds
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate([[close[0]], close[:-1]]) * (1 + rng.normal(0, 0.001, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
    volume = rng.uniform(10, 1000, n)
    funding = np.where((ts % 28800) == 0, rng.normal(1e-4, 1e-4, n), np.nan)
    return {
        "ts": ts,
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "taker_buy_volume": volume * rng.uniform(0.2, 0.8, n),
        "open_interest": 1e6 * np.exp(np.cumsum(rng.normal(0, 0.001, n))),
        "funding_rate": funding,
        "liquidations": volume * rng.uniform(0, 0.05, n),
    }


def make_market(code: str = "BINANCE"):
    """A market with its real sessions, from the reference data bootstrap uses."""
    from etl.models import Market, TradingSession
    from etl.reference_data import MARKETS, SESSIONS

    spec = next(m for m in MARKETS if m["code"] == code)
    market, _ = Market.objects.get_or_create(
        code=code, defaults={k: v for k, v in spec.items() if k not in ("code", "default_asset_class")}
    )
    for session in SESSIONS[code]:
        TradingSession.objects.get_or_create(
            market=market, name=session["name"], start_weekday=session["start_weekday"], defaults=session
        )
    return market


def make_symbol(ticker: str = "BTC", market: str = "BINANCE", asset_class: str | None = None):
    from etl.models import AssetClass, Symbol

    ac = None
    if asset_class:
        ac, _ = AssetClass.objects.get_or_create(code=asset_class, defaults={"name": asset_class})
    symbol, _ = Symbol.objects.get_or_create(ticker=ticker, market=make_market(market), defaults={"asset_class": ac})
    return symbol


def candle_frame(data: dict, rows: slice | None = None):
    """The DataFrame a candle source returns, from random_candles() arrays."""
    import pandas as pd

    frame = pd.DataFrame({k: v for k, v in data.items() if k != "ts"})
    frame.insert(0, "ts", pd.to_datetime(data["ts"], unit="s", utc=True))
    return frame.iloc[rows].reset_index(drop=True) if rows is not None else frame


def insert_market_data(symbol, data: dict, *, timeframe: str = "15m", rows: slice | None = None) -> int:
    """Raw candles into market_data, linked to `symbol` as the sync would link them."""
    from etl.models import MarketData

    frame = candle_frame(data, rows)
    objs = [
        MarketData(
            ticker=symbol.ticker,
            market=symbol.market.code,
            timeframe=timeframe,
            ts=r.ts,
            open=r.open,
            high=r.high,
            low=r.low,
            close=r.close,
            volume=r.volume,
            symbol=symbol,
            extra={"taker_buy_volume": r.taker_buy_volume} if "taker_buy_volume" in frame else None,
        )
        for r in frame.itertuples()
    ]
    MarketData.objects.bulk_create(objs, batch_size=5000)
    return len(objs)


def fail_series_in(monkeypatch, broken_pk: int) -> None:
    """Every path's `compute_many` (chunked, from scratch, and per series through `compute_rows`)
    raises "boom" when one symbol's series is among those it computes."""
    from enrichment.candles.services import feature_batch, feature_compute, feature_scratch

    def failing(real):
        def compute(keys, rows):
            if any(key.symbol.pk == broken_pk for key in keys):
                raise RuntimeError("boom")
            return real(keys, rows)

        return compute

    for module in (feature_batch, feature_scratch, feature_compute):
        monkeypatch.setattr(module, "compute_many", failing(module.compute_many))
