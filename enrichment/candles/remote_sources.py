"""Remote candle sources: adapters from the provider clients (`enrichment.providers`)
to the candle-source interface (`candle_frames.CandleSource`), and a fallback source
that tries them in the order of priority for the symbol's asset class."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from enrichment.candles.candle_frames import CandleSource, empty_frame, normalise
from enrichment.candles.feature_list import timeframe_seconds
from enrichment.candles.models import CANDLE_COLUMNS
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
# Inside `fetch_scope`: the clients, enabled providers and spellings read once for many fetches.
_SCOPE: ContextVar[dict | None] = ContextVar("candle_fetch_scope", default=None)


@contextmanager
def fetch_scope(symbols: Iterable[Symbol] = ()) -> Iterator[None]:
    """Many fetches in a row (a live poll): one client per provider, its HTTP session kept
    alive between calls and its bookkeeping (rate-limit grants, circuit reads, fetch-log rows)
    done per block of calls (`enrichment.providers.bookkeeping`); the enabled providers read
    once; the spellings of `symbols` at every provider read in one query."""
    ids = [s.pk for s in symbols]
    spellings = {
        (symbol_id, code): spelled
        for symbol_id, code, spelled in SymbolMapping.objects.filter(symbol_id__in=ids)
        .exclude(is_valid=False)
        .values_list("symbol_id", "provider__code", "provider_symbol")
    }
    scope = {"clients": {}, "enabled": None, "spellings": spellings, "known": set(ids)}
    token = _SCOPE.set(scope)
    try:
        yield
    finally:
        _SCOPE.reset(token)
        for client in scope["clients"].values():
            client.close()


def _client(code: str):
    scope = _SCOPE.get()
    if scope is None:
        return get_client(code)
    if code not in scope["clients"]:
        scope["clients"][code] = get_client(code, batched=True)
    return scope["clients"][code]


def _enabled_providers() -> set[str]:
    scope = _SCOPE.get()
    if scope is not None and scope["enabled"] is not None:
        return scope["enabled"]
    enabled = set(DataProvider.objects.filter(is_enabled=True).values_list("code", flat=True))
    if scope is not None:
        scope["enabled"] = enabled
    return enabled


def provider_symbol(symbol: Symbol, provider: str) -> str:
    """The symbol's spelling at this provider: its mapping, or the ticker as it is."""
    scope = _SCOPE.get()
    if scope is not None and symbol.pk in scope["known"]:
        return scope["spellings"].get((symbol.pk, provider)) or symbol.ticker
    mapped = (
        SymbolMapping.objects.filter(symbol=symbol, provider__code=provider)
        .exclude(is_valid=False)
        .values_list("provider_symbol", flat=True)
        .first()
    )
    return mapped or symbol.ticker


def _frame(candles) -> pd.DataFrame:
    """The candles as a normalised frame, built column by column (a live poll builds one per
    symbol and minute: pandas' row-wise construction and normalising cost ~10 ms each)."""
    if not candles:
        return empty_frame()
    frame = pd.DataFrame({"ts": pd.to_datetime([c.ts for c in candles], utc=True)})
    for col in CANDLE_COLUMNS:
        frame[col] = np.array([getattr(c, col, None) for c in candles], dtype=np.float64)
    if frame["ts"].is_monotonic_increasing and frame["ts"].is_unique:
        return frame
    return normalise(frame)


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
        return self._candles(symbol, timeframe, start, end, provider_symbol(symbol, self.code), _client(self.code))

    def _candles(self, symbol, timeframe, start, end, spelled: str, client) -> pd.DataFrame:
        if start is None or end is None:
            raise ProviderError(f"{self.code}: a remote fetch needs a start and an end", permanent=True)
        candles = client.fetch_candles(provider_symbol=spelled, timeframe=timeframe, start=start, end=end - _ONE_MS)
        return _within(_frame(candles), start, end)


def stats_period(timeframe: str) -> str | None:
    """The period of Binance's futures statistics for bars of `timeframe`: the same one,
    5 minutes under it (a 1-minute bar gets the value on the bar it was taken in), none
    for a timeframe Binance does not aggregate."""
    if timeframe in STATS_PERIODS:
        return timeframe
    return "5m" if timeframe_seconds(timeframe) < 300 else None


def _on_bars(points: list[tuple], index: pd.DatetimeIndex, bar: pd.Timedelta, position: int = 1) -> np.ndarray:
    """The values of (ts, value, ...) points on the bars they fall in (the last one wins), NaN elsewhere."""
    when = pd.DatetimeIndex(pd.to_datetime([p[0] for p in points], utc=True)).floor(bar)
    values = pd.Series([p[position] for p in points], index=when, dtype="float64").groupby(level=0).last()
    return values.reindex(index).to_numpy()


def _spans_boundary(index: pd.DatetimeIndex, bar: pd.Timedelta, every_seconds: int) -> bool:
    """Does one of the bars contain a multiple of `every_seconds` (UTC)?"""
    opens = index.as_unit("s").asi8
    return bool(((-opens) % every_seconds < bar.total_seconds()).any())


def stats_delay_bars(spread_key: int, *, timeframe: str) -> int:
    """How many bars after its own bar a live poll asks for a statistic (1 to the bars in a
    statistics period), from a stable number of the symbol (its id): each minute of a 5-minute
    period carries a fifth of the symbols' statistics calls instead of all of them on the
    boundary. Ids rather than a hash: symbols created together have consecutive ids, so the
    minutes get within one of N/5 each (a hash of 500 symbols would give some minute ~115)."""
    period = stats_period(timeframe)
    slots = max(1, timeframe_seconds(period) // timeframe_seconds(timeframe)) if period else 1
    return 1 + spread_key % slots


def binance_extras(
    frame: pd.DataFrame,
    *,
    client,
    provider_symbol: str,
    timeframe: str,
    start: datetime,
    end: datetime,
    spread: bool = False,
    spread_key: int = 0,
) -> pd.DataFrame:
    """Add to Binance klines the funding rate (on the bar each funding happened in), open
    interest, the global long/short account ratio and, where a kline lacks it, the taker buy
    volume from the taker buy/sell statistics. Each extra that fails is logged and left NULL:
    the candles stand on their own, and the next fetch brings it.

    `spread` (the live poller): the extras are asked for the window [start, end) shifted back
    by `stats_delay_bars(spread_key)` - 1 bars, so a symbol's statistics of a boundary come
    that many polls later; the values for bars before `start` (stored by an earlier poll) are returned in
    `frame.attrs["earlier_extras"]` (ts and the extra columns) for the caller to fill in."""
    if frame.empty:  # nothing stored: the next poll asks for the same window again
        return frame
    bar = pd.Timedelta(seconds=timeframe_seconds(timeframe))
    shift = (stats_delay_bars(spread_key, timeframe=timeframe) - 1) * bar if spread else pd.Timedelta(0)
    window_start, window_end = pd.Timestamp(start) - shift, pd.Timestamp(end) - shift
    if spread:  # every bar of the shifted window may carry an extra, stored or not
        index = pd.date_range(window_start, window_end, freq=bar, inclusive="left")
    else:
        index = pd.DatetimeIndex(frame["ts"])
    if index.empty:
        return frame
    last = window_end.to_pydatetime() - _ONE_MS
    first = window_start.to_pydatetime()
    period = stats_period(timeframe)
    calls = {}
    # Only ask for what can land on these bars: fundings happen on the hour, statistics on their
    # period's boundaries (a live poll of one 1-minute bar asks for them once in five or sixty).
    if _spans_boundary(index, bar, 3600):
        funding = {"provider_symbol": provider_symbol, "start": first, "end": last}
        calls["funding_rate"] = lambda: client.fetch_funding_rates(**funding)
    if period is not None and _spans_boundary(index, bar, timeframe_seconds(period)):
        stats = {"provider_symbol": provider_symbol, "period": period, "start": first, "end": last}
        calls["open_interest"] = lambda: client.fetch_open_interest(**stats)
        calls["long_short_account_ratio"] = lambda: client.fetch_long_short_ratio(**stats)
        if frame["taker_buy_volume"].isna().any():
            calls["taker_buy_volume"] = lambda: client.fetch_taker_ratio(**stats)
    values = {}
    for column, call in calls.items():
        try:
            points = call()
        except ProviderError as exc:
            log.warning("%s %s: %s unavailable: %s", client.code, provider_symbol, column, exc)
            continue
        if points:
            values[column] = _on_bars(points, index, bar, position=2 if column == "taker_buy_volume" else 1)
    if not spread:
        _extras_onto(frame, index, values)
        return frame
    on_frame = index >= pd.Timestamp(start)
    mine = pd.DatetimeIndex(frame["ts"])
    _extras_onto(
        frame,
        mine,
        {c: pd.Series(v[on_frame], index=index[on_frame]).reindex(mine).to_numpy() for c, v in values.items()},
    )
    earlier = pd.DataFrame({"ts": index[~on_frame], **{c: v[~on_frame] for c, v in values.items()}})
    keep = earlier.drop(columns="ts").notna().any(axis=1) if values else np.zeros(len(earlier), dtype=bool)
    frame.attrs["earlier_extras"] = EarlierExtras(earlier[keep].reset_index(drop=True))
    return frame


@dataclass(frozen=True, eq=False, slots=True)
class EarlierExtras:
    """Extras for bars stored before (ts and the extra columns), carried in the frame's attrs
    (wrapped: pandas compares attrs, and a frame has no truth value)."""

    frame: pd.DataFrame


def _extras_onto(frame: pd.DataFrame, index: pd.DatetimeIndex, values: dict[str, np.ndarray]) -> None:
    for column, on_bars in values.items():
        if column == "taker_buy_volume":  # (ts, buySellRatio, buyVol, sellVol): fill the gaps only
            frame[column] = frame[column].fillna(pd.Series(on_bars, index=frame.index))
        else:
            frame[column] = on_bars


class BinanceFuturesSource(ProviderCandleSource):
    """Binance USD-M futures: klines (with taker buy volume, quote volume, trades), plus
    `binance_extras`: funding, open interest and the long/short account ratio (the last two
    about the last 30 days only). Liquidations and exchange flows are not served publicly."""

    # The live poller asks with `spread_extras` (see `binance_extras`).
    spreads_extras = True

    def __init__(self):
        super().__init__("BINANCE")

    def fetch(
        self,
        *,
        symbol: Symbol,
        timeframe: str,
        start: datetime | None,
        end: datetime | None,
        spread_extras: bool = False,
    ) -> pd.DataFrame:
        spelled, client = provider_symbol(symbol, self.code), _client(self.code)
        frame = self._candles(symbol, timeframe, start, end, spelled, client)
        return binance_extras(
            frame,
            client=client,
            provider_symbol=spelled,
            timeframe=timeframe,
            start=start,
            end=end,
            spread=spread_extras,
            spread_key=symbol.pk,
        )


class FallbackSource:
    """'auto': the providers for the symbol's asset class in priority order; the first that
    answers wins, a failing one hands over to the next."""

    code = "auto"
    spreads_extras = True

    def __init__(self, providers: Mapping[str, CandleSource]):
        self.providers = providers  # provider code -> its source

    def fetch(
        self,
        *,
        symbol: Symbol,
        timeframe: str,
        start: datetime | None,
        end: datetime | None,
        spread_extras: bool = False,
    ) -> pd.DataFrame:
        enabled = _enabled_providers()
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
                source = self.providers[code]
                options = {"spread_extras": spread_extras} if getattr(source, "spreads_extras", False) else {}
                frame = source.fetch(symbol=symbol, timeframe=timeframe, start=start, end=end, **options)
                frame.attrs["provider"] = code  # which one answered, for the rows' provenance
                return frame
            except ProviderError as exc:
                log.warning("candles from %s failed for %s, trying the next: %s", code, symbol, exc)
                last = exc
        assert last is not None
        raise last
