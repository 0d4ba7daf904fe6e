"""Remote candle sources: adapters from the provider clients (`enrichment.providers`)
to the candle-source interface (`candle_frames.CandleSource`), and a fallback source
that tries them in the order of priority for the symbol's asset class."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from enrichment.candles.candle_frames import CandleSource, empty_frame, normalise
from enrichment.candles.feature_list import timeframe_seconds
from enrichment.providers.clients import get_client
from enrichment.providers.errors import ProviderError
from etl.models import DataProvider, Symbol, SymbolMapping

log = logging.getLogger(__name__)

# Tried in this order (skipping providers that are disabled in the admin).
PRIORITY: dict[str, tuple[str, ...]] = {
    "CRYPTO": ("BINANCE", "YAHOO_FINANCE"),
    "STOCK": ("POLYGON", "YAHOO_FINANCE"),
    "ETF": ("POLYGON", "YAHOO_FINANCE"),
}
DEFAULT_PRIORITY = ("YAHOO_FINANCE",)
# Binance's futures statistics come in these periods only.
STATS_PERIODS = {"5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d"}
_ONE_MS = timedelta(milliseconds=1)


def provider_symbol(symbol: Symbol, provider: str) -> str:
    """The symbol's spelling at this provider: its mapping, or the ticker as it is."""
    mapped = (
        SymbolMapping.objects.filter(symbol=symbol, provider__code=provider)
        .exclude(is_valid=False)
        .values_list("provider_symbol", flat=True)
        .first()
    )
    return mapped or symbol.ticker


def _frame(candles) -> pd.DataFrame:
    if not candles:
        return empty_frame()
    return normalise(pd.DataFrame([asdict(c) for c in candles]))


def _within(frame: pd.DataFrame, start: datetime | None, end: datetime | None) -> pd.DataFrame:
    """Clients return [start, end]; sources promise [start, end)."""
    keep = np.ones(len(frame), dtype=bool)
    if start is not None:
        keep &= (frame["ts"] >= pd.Timestamp(start)).to_numpy()
    if end is not None:
        keep &= (frame["ts"] < pd.Timestamp(end)).to_numpy()
    return frame[keep].reset_index(drop=True)


class ProviderCandleSource:
    """Klines/chart/aggregates from one provider."""

    def __init__(self, code: str):
        self.code = code

    def fetch(self, *, symbol: Symbol, timeframe: str, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        if start is None or end is None:
            raise ProviderError(f"{self.code}: a remote fetch needs a start and an end", permanent=True)
        client = get_client(self.code)
        candles = client.fetch_candles(
            provider_symbol=provider_symbol(symbol, self.code), timeframe=timeframe, start=start, end=end - _ONE_MS
        )
        return _within(_frame(candles), start, end)


class BinanceFuturesSource(ProviderCandleSource):
    """Binance USD-M futures: klines (with taker buy volume, quote volume, trades), plus the
    funding rate on the bar in which each funding happened and open interest at each bar
    where Binance has it (about the last 30 days). Liquidations are not served publicly."""

    def __init__(self):
        super().__init__("BINANCE")

    def fetch(self, *, symbol: Symbol, timeframe: str, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        frame = super().fetch(symbol=symbol, timeframe=timeframe, start=start, end=end)
        if frame.empty:
            return frame
        client = get_client(self.code)
        spelled = provider_symbol(symbol, self.code)
        bar = pd.Timedelta(seconds=timeframe_seconds(timeframe))
        index = pd.DatetimeIndex(frame["ts"])
        try:
            funding = client.fetch_funding_rates(provider_symbol=spelled, start=start, end=end - _ONE_MS)
            if funding:
                when = pd.DatetimeIndex(pd.to_datetime([t for t, _ in funding], utc=True)).floor(bar)
                rates = pd.Series([r for _, r in funding], index=when).groupby(level=0).last()
                frame["funding_rate"] = rates.reindex(index).to_numpy()
            if timeframe in STATS_PERIODS:
                oi = client.fetch_open_interest(
                    provider_symbol=spelled, period=timeframe, start=start, end=end - _ONE_MS
                )
                if oi:
                    values = pd.Series([v for _, v in oi], index=pd.to_datetime([t for t, _ in oi], utc=True))
                    frame["open_interest"] = values.groupby(level=0).last().reindex(index).to_numpy()
        except ProviderError as exc:  # the candles stand on their own; the extras come next time
            log.warning("%s %s: supplementary data unavailable: %s", self.code, spelled, exc)
        return frame


class FallbackSource:
    """'auto': the providers for the symbol's asset class in priority order; the first that
    answers wins, a failing one hands over to the next."""

    code = "auto"

    def __init__(self, providers: Mapping[str, CandleSource]):
        self.providers = providers  # provider code -> its source

    def fetch(self, *, symbol: Symbol, timeframe: str, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        enabled = set(DataProvider.objects.filter(is_enabled=True).values_list("code", flat=True))
        asset_class = symbol.asset_class.code if symbol.asset_class_id else ""
        family = next((k for k in PRIORITY if asset_class.startswith(k)), None)
        order = [c for c in PRIORITY.get(family, DEFAULT_PRIORITY) if c in enabled]
        if not order:
            raise ProviderError(
                f"no enabled candle provider for {symbol} ({asset_class or 'no asset class'})", permanent=True
            )
        last: ProviderError | None = None
        for code in order:
            try:
                return self.providers[code].fetch(symbol=symbol, timeframe=timeframe, start=start, end=end)
            except ProviderError as exc:
                log.warning("candles from %s failed for %s, trying the next: %s", code, symbol, exc)
                last = exc
        assert last is not None
        raise last
