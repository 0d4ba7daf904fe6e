"""Feature computation for market_data_v2: pure, vectorized numpy/pandas, no ORM.

Every feature is a float64 array aligned with the input candles; NaN means null
("not enough history" or "undefined for this timeframe"), never a guess.
`docs/features.md` gives each one's formula, units, window and warm-up.

Three rules shape the code:

* Windows never cross a series break. `breaks[i]` is True when row i starts a
  new contiguous stretch (the first row of the series, or missing bars before
  it); a window or a recursion that would reach over it restarts after it.
* Horizons are time, not bar counts: `return_1h` looks back 3600 s of trading
  time (4 bars on 15m, undefined on 4h or daily bars); `return_1d` looks back
  one trading day (`bars_per_day` bars, 1 bar on daily bars).
* Incremental equals full, bit for bit. Every windowed value is a fixed tree of
  additions over exactly the values in its window (`_wsum`), so it does not
  depend on where the array started; recursive values (ATR, EMA, RSI averages)
  are the same sequential recursion whether they start at the seed or at a
  stored state. A caller passes the context rows before `emit_from` (at least
  `LOOKBACK_BARS` of them, and `FUNDING_WINDOW` funding observations) and the
  stored recursive state at row `emit_from - 1` (see `STATE_COLUMNS`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

ATR_PERIOD = 14
RSI_PERIOD = 14
EMA_PERIOD = 20
FUNDING_WINDOW = 90  # funding observations: 30 days at Binance's 8-hourly funding
STRUCTURE_WINDOW = 20  # market_structure compares the last 20 bars with the 20 before
# The longest bar window: volatility_50 needs 51 closes (50 returns).
LOOKBACK_BARS = 51

FEATURES: tuple[str, ...] = (
    # the seed's sixteen
    "return_1h",
    "return_1d",
    "volatility_20",
    "volatility_50",
    "atr_14",
    "trend_direction",
    "market_structure",
    "rolling_volume_20",
    "delta",
    "buy_sell_ratio",
    "liquidation_intensity",
    "volume_spike_score",
    "long_short_ratio",
    "funding_rate_percentile",
    "exchange_inflow",
    "open_interest_change",
    # standard indicators
    "rsi_14",
    "sma_20",
    "sma_50",
    "ema_20",
    "vwap_20",
    "hl_range",
    "bb_upper_20",
    "bb_lower_20",
)
# Recursive state that is not itself a feature but must be stored so that an
# incremental run continues the recursion exactly (atr_14 and ema_20 are their own state).
STATE_COLUMNS: tuple[str, ...] = ("rsi_avg_gain", "rsi_avg_loss")
RECURSIVE = ("atr_14", "ema_20", "rsi_avg_gain", "rsi_avg_loss")

INPUT_COLUMNS: tuple[str, ...] = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "taker_buy_volume",
    "open_interest",
    "funding_rate",
    "liquidations",
    "long_short_account_ratio",
    "exchange_netflow",
)

TREND_LABELS = {1.0: "up", -1.0: "down", 0.0: "neutral"}
STRUCTURE_LABELS = {1.0: "bullish", -1.0: "bearish", 0.0: "range"}

_FAR = np.int64(-(2**62))


def default_breaks(ts: np.ndarray, timeframe_seconds: int) -> np.ndarray:
    """Breaks for a market that trades around the clock: any step longer than one bar."""
    t = _as_seconds(ts)
    breaks = np.ones(len(t), dtype=bool)
    if len(t) > 1:
        breaks[1:] = np.diff(t) != timeframe_seconds
    return breaks


def horizon_bars(*, timeframe_seconds: int, bars_per_day: int | None) -> dict[str, int | None]:
    """Bars back for each return horizon, or None where the horizon is undefined."""
    if bars_per_day is None and timeframe_seconds < 86400 and 86400 % timeframe_seconds == 0:
        bars_per_day = 86400 // timeframe_seconds  # around the clock: a day is 24 hours of bars
    one_hour = 3600 // timeframe_seconds if timeframe_seconds <= 3600 and 3600 % timeframe_seconds == 0 else None
    if timeframe_seconds > 86400:
        one_day = None
    elif timeframe_seconds == 86400:
        one_day = 1
    else:
        one_day = bars_per_day if bars_per_day else None
    return {"return_1h": one_hour, "return_1d": one_day}


def compute_features(
    data: Mapping[str, np.ndarray],
    *,
    timeframe_seconds: int,
    bars_per_day: int | None = None,
    breaks: np.ndarray | None = None,
    emit_from: int = 0,
    state: Mapping[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Features (and recursive state) for rows `emit_from..n-1` of `data`.

    `data` maps INPUT_COLUMNS (and `ts` when `breaks` is not given) to equal-length
    arrays; optional inputs may be missing or NaN. When `breaks[0]` is False the
    first row continues an older stretch whose start lies before the data: the
    recursions then continue from `state` (values at row `emit_from - 1`).
    """
    close = _col(data, "close")
    n = len(close)
    if breaks is None:
        breaks = default_breaks(np.asarray(data["ts"]), timeframe_seconds)
    breaks = np.asarray(breaks, dtype=bool)
    high, low, volume = _col(data, "high"), _col(data, "low"), _col(data, "volume")
    idx = np.arange(n, dtype=np.int64)
    seg_start = np.maximum.accumulate(np.where(breaks, idx, _FAR)) if n else idx
    pos = idx - seg_start  # bars since the stretch started (huge when it started before the data)

    out: dict[str, np.ndarray] = {}
    prev_close = _shift(close, 1, pos)

    # Returns over time horizons (trading time), within a stretch.
    for name, k in horizon_bars(timeframe_seconds=timeframe_seconds, bars_per_day=bars_per_day).items():
        out[name] = close / _shift(close, k, pos) - 1.0 if k else _nan(n)

    log_ret = np.log(close / prev_close)
    out["volatility_20"] = _rolling_std(log_ret, 20, pos, min_pos=20)
    out["volatility_50"] = _rolling_std(log_ret, 50, pos, min_pos=50)

    sma_20 = _rolling_mean(close, 20, pos)
    sma_50 = _rolling_mean(close, 50, pos)
    out["sma_20"], out["sma_50"] = sma_20, sma_50
    close_std_20 = _rolling_std(close, 20, pos, min_pos=19)
    out["bb_upper_20"] = sma_20 + 2.0 * close_std_20
    out["bb_lower_20"] = sma_20 - 2.0 * close_std_20

    # True range: the first bar of a stretch has no previous close, so TR = high - low.
    tr = np.fmax(high - low, np.fmax(np.abs(high - prev_close), np.abs(low - prev_close)))
    first = breaks & (pos == 0)
    tr[first] = (high - low)[first]
    gains = np.where(np.isnan(prev_close), np.nan, np.maximum(close - prev_close, 0.0))
    losses = np.where(np.isnan(prev_close), np.nan, np.maximum(prev_close - close, 0.0))

    state = state or {}
    segments = _segments(breaks, n)
    out["atr_14"] = _recursive(
        tr, ATR_PERIOD, 1.0 / ATR_PERIOD, ATR_PERIOD - 1, segments, breaks, emit_from, state.get("atr_14")
    )
    out["ema_20"] = _recursive(
        close, EMA_PERIOD, 2.0 / (EMA_PERIOD + 1), EMA_PERIOD - 1, segments, breaks, emit_from, state.get("ema_20")
    )
    # RSI's averages start one bar later: the first bar of a stretch has no change.
    avg_gain = _recursive(
        gains, RSI_PERIOD, 1.0 / RSI_PERIOD, RSI_PERIOD, segments, breaks, emit_from, state.get("rsi_avg_gain"), skip=1
    )
    avg_loss = _recursive(
        losses, RSI_PERIOD, 1.0 / RSI_PERIOD, RSI_PERIOD, segments, breaks, emit_from, state.get("rsi_avg_loss"), skip=1
    )
    out["rsi_avg_gain"], out["rsi_avg_loss"] = avg_gain, avg_loss
    moved = avg_gain + avg_loss
    with np.errstate(invalid="ignore", divide="ignore"):
        out["rsi_14"] = np.where(moved > 0, 100.0 * (avg_gain / moved), np.nan)

    # Trend: price and the two averages stacked the same way.
    trend = np.where(
        (close > sma_20) & (sma_20 > sma_50), 1.0, np.where((close < sma_20) & (sma_20 < sma_50), -1.0, 0.0)
    )
    out["trend_direction"] = np.where(np.isnan(sma_50), np.nan, trend)

    # Structure: higher high and higher low than the 20 bars before -> bullish.
    w = STRUCTURE_WINDOW
    hh, ll = _rolling_extreme(high, w, np.maximum), _rolling_extreme(low, w, np.minimum)
    hh_prev, ll_prev = _shift(hh, w, pos), _shift(ll, w, pos)
    structure = np.where((hh > hh_prev) & (ll > ll_prev), 1.0, np.where((hh < hh_prev) & (ll < ll_prev), -1.0, 0.0))
    out["market_structure"] = np.where(np.isnan(hh_prev) | np.isnan(ll_prev), np.nan, structure)

    vol_20 = _rolling_mean(volume, 20, pos)
    out["rolling_volume_20"] = vol_20
    with np.errstate(invalid="ignore", divide="ignore"):
        prior_vol = _shift(vol_20, 1, pos)
        out["volume_spike_score"] = np.where(prior_vol > 0, volume / prior_vol, np.nan)
        typical = (high + low + close) / 3.0
        pv = _rolling_sum(typical * volume, 20, pos)
        vsum = _rolling_sum(volume, 20, pos)
        out["vwap_20"] = np.where(vsum > 0, pv / vsum, np.nan)
        out["hl_range"] = (high - low) / close

        taker_buy = _col(data, "taker_buy_volume")
        taker_sell = volume - taker_buy
        out["delta"] = taker_buy - taker_sell
        out["buy_sell_ratio"] = np.where(taker_sell > 0, taker_buy / taker_sell, np.nan)
        liq = _col(data, "liquidations")
        out["liquidation_intensity"] = np.where(volume > 0, liq / volume, np.nan)
        out["long_short_ratio"] = _col(data, "long_short_account_ratio").copy()
        out["exchange_inflow"] = _col(data, "exchange_netflow").copy()
        oi = _col(data, "open_interest")
        prev_oi = _shift(oi, 1, pos)
        out["open_interest_change"] = np.where(prev_oi > 0, oi / prev_oi - 1.0, np.nan)
    out["funding_rate_percentile"] = _funding_percentile(_col(data, "funding_rate"), seg_start)

    if emit_from:
        out = {k: v[emit_from:] for k, v in out.items()}
    return out


# --- building blocks -------------------------------------------------------


def _col(data: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    values = data.get(name)
    if values is None:
        return _nan(len(data["close"]))
    return np.asarray(values, dtype=np.float64)


def _nan(n: int) -> np.ndarray:
    return np.full(n, np.nan)


def _as_seconds(ts: np.ndarray) -> np.ndarray:
    arr = np.asarray(ts)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[s]").astype(np.int64)
    if arr.dtype == object:
        return pd.DatetimeIndex(arr).as_unit("s").asi8
    return arr.astype(np.int64)


def _shift(x: np.ndarray, k: int, pos: np.ndarray) -> np.ndarray:
    """x[i - k] where that row is in the same stretch, else NaN."""
    out = _nan(len(x))
    if k < len(x):
        out[k:] = x[:-k] if k else x
    out[pos < k] = np.nan
    return out


def _wsum_raw(x: np.ndarray, w: int, combine=np.add) -> np.ndarray:
    """combine() over each window x[i-w+1..i], as a fixed binary tree of the
    window's own values (so a window's result never depends on where the array
    starts, unlike a running sum). Entries before w-1 are NaN."""
    n = len(x)
    out = _nan(n)
    if w > n:
        return out
    acc = None  # combined windows starting at each index, of length `covered`
    covered = 0
    level, size = x, 1  # windows of length `size` starting at each index
    remaining = w
    while remaining:
        if remaining & 1:
            if acc is None:
                acc, covered = level, size
            else:
                # acc covers [i, i+covered); append the window of `level` starting at i+covered
                length = n - (covered + size) + 1
                acc = combine(acc[:length], level[covered : covered + length])
                covered += size
        remaining >>= 1
        if remaining:
            level = combine(level[:-size], level[size:]) if size < len(level) else level[:0]
            size *= 2
    out[w - 1 :] = acc[: n - w + 1]
    return out


def _rolling_sum(x: np.ndarray, w: int, pos: np.ndarray, *, min_pos: int | None = None) -> np.ndarray:
    out = _wsum_raw(x, w)
    out[pos < (w - 1 if min_pos is None else min_pos)] = np.nan
    return out


def _rolling_mean(x: np.ndarray, w: int, pos: np.ndarray) -> np.ndarray:
    return _rolling_sum(x, w, pos) / w


def _rolling_std(x: np.ndarray, w: int, pos: np.ndarray, *, min_pos: int) -> np.ndarray:
    """Population standard deviation (ddof=0) over w values."""
    s = _wsum_raw(x, w)
    s2 = _wsum_raw(x * x, w)
    mean = s / w
    var = s2 / w - mean * mean
    out = np.sqrt(np.maximum(var, 0.0))
    out[pos < min_pos] = np.nan
    return out


def _rolling_extreme(x: np.ndarray, w: int, op) -> np.ndarray:
    return _wsum_raw(x, w, combine=op)


def _segments(breaks: np.ndarray, n: int) -> list[tuple[int, int]]:
    starts = np.flatnonzero(breaks).tolist()
    if n and (not starts or starts[0] != 0):
        starts.insert(0, 0)
    ends = starts[1:] + [n]
    return list(zip(starts, ends, strict=True))


def _recursive(
    x: np.ndarray,
    period: int,
    alpha: float,
    seed_offset: int,
    segments: list[tuple[int, int]],
    breaks: np.ndarray,
    emit_from: int,
    state: float | None,
    *,
    skip: int = 0,
) -> np.ndarray:
    """y[s] = mean of the first `period` inputs of a stretch (after `skip`), then
    y[t] = (1 - alpha) * y[t-1] + alpha * x[t] (Wilder: alpha = 1/period; EMA: 2/(period+1)).

    A stretch whose start is in the data is computed from its seed; one that
    started before the data (breaks[0] False) continues from `state` at emit_from - 1.
    """
    y = _nan(len(x))
    for a, b in segments:
        if b <= emit_from:
            continue
        if breaks[a]:
            seed_at = a + seed_offset
            if seed_at >= b:
                continue
            acc = 0.0
            for v in x[a + skip : seed_at + 1].tolist():  # sequential, as TA-Lib sums its seed
                acc += v
            y[seed_at] = acc / period
            start = seed_at
        else:
            if emit_from == 0 or state is None or np.isnan(state):
                continue
            start = emit_from - 1
            y[start] = state
        if b - start > 1:
            seq = np.empty(b - start)
            seq[0] = y[start]
            seq[1:] = x[start + 1 : b]
            y[start:b] = pd.Series(seq).ewm(alpha=alpha, adjust=False, ignore_na=False).mean().to_numpy()
    return y


def _funding_percentile(funding: np.ndarray, seg_start: np.ndarray) -> np.ndarray:
    """Percent (0-100] of the last FUNDING_WINDOW funding observations in the stretch
    that are <= this one; only on rows that carry a funding rate."""
    out = _nan(len(funding))
    where = np.flatnonzero(~np.isnan(funding))
    w = FUNDING_WINDOW
    if len(where) < w:
        return out
    vals = funding[where]
    current = vals[w - 1 :]
    count = np.zeros(len(current), dtype=np.int32)
    for k in range(w):
        np.add(count, vals[w - 1 - k : len(vals) - k] <= current, out=count, casting="unsafe")
    same_stretch = seg_start[where[: len(where) - w + 1]] == seg_start[where[w - 1 :]]
    out[where[w - 1 :]] = np.where(same_stretch, 100.0 * count / w, np.nan)
    return out


def lookback_bars(*, timeframe_seconds: int, bars_per_day: int | None) -> int:
    """Rows of context an incremental run needs before its first new row (besides
    FUNDING_WINDOW - 1 earlier funding observations)."""
    horizons = horizon_bars(timeframe_seconds=timeframe_seconds, bars_per_day=bars_per_day)
    return max([LOOKBACK_BARS, 2 * STRUCTURE_WINDOW] + [k + 1 for k in horizons.values() if k])


def context_start(funding: np.ndarray, emit_from: int, *, timeframe_seconds: int, bars_per_day: int | None) -> int:
    """First row an incremental run from `emit_from` must read."""
    start = emit_from - lookback_bars(timeframe_seconds=timeframe_seconds, bars_per_day=bars_per_day)
    earlier = np.flatnonzero(~np.isnan(np.asarray(funding[:emit_from], dtype=np.float64)))
    if len(earlier):
        start = min(start, int(earlier[max(0, len(earlier) - (FUNDING_WINDOW - 1))]))
    return max(0, start)


_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def timeframe_seconds(timeframe: str) -> int:
    """'15m' -> 900, '1h' -> 3600, '1d' -> 86400, '1w' -> 604800 (ValueError otherwise)."""
    tf = timeframe.strip()
    number, unit = tf[:-1], tf[-1:].lower()
    if unit not in _UNIT_SECONDS or not number.isdigit() or int(number) <= 0:
        raise ValueError(f"unknown timeframe {timeframe!r}: use e.g. 1m, 15m, 1h, 4h, 1d, 1w")
    return int(number) * _UNIT_SECONDS[unit]
