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
* Incremental equals full, bit for bit. Every windowed value is a fixed sequence
  of operations over exactly the values in its window, aligned to global row
  numbers (`_window_kernel`), so it does not depend on where the array started;
  recursive values (ATR, EMA, RSI averages) are the same sequential recursion
  whether they start at their first value (the warm-up seed) or at a stored state. The loops are compiled
  with numba (TA-Lib's speed and arithmetic). A caller passes the context rows
  before `emit_from` (at least
  `LOOKBACK_BARS` of them, and `FUNDING_WINDOW` funding observations) and the
  stored recursive state at row `emit_from - 1` (see `feature_list.RECURSIVE`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from numba import njit

from enrichment.candles.feature_list import (
    ATR_PERIOD,
    EMA_PERIOD,
    FUNDING_WINDOW,
    RECURSIVE,
    RSI_PERIOD,
    STRUCTURE_WINDOW,
    horizon_bars,
    lookback_bars,
)


def default_breaks(ts: np.ndarray, timeframe_seconds: int) -> np.ndarray:
    """Breaks for a market that trades around the clock: any step longer than one bar."""
    return _breaks_kernel(np.ascontiguousarray(_as_seconds(ts)), timeframe_seconds)


def compute_features(
    data: Mapping[str, np.ndarray],
    *,
    timeframe_seconds: int,
    bars_per_day: int | None = None,
    breaks: np.ndarray | None = None,
    emit_from: int = 0,
    state: Mapping[str, float] | None = None,
    row_offset: int = 0,
) -> dict[str, np.ndarray]:
    """Features (and recursive state) for rows `emit_from..n-1` of `data`.

    `data` maps INPUT_COLUMNS (and `ts` when `breaks` is not given) to equal-length
    arrays; optional inputs may be missing or NaN. When `breaks[0]` is False the
    first row continues an older stretch whose start lies before the data: the
    recursions then continue from `state` (values at row `emit_from - 1`).
    `row_offset` is the number of the series' rows before `data` (windows are aligned
    to global row numbers, see `_window_kernel`). One series: `compute_features_many`.
    """
    n = len(_col(data, "close"))
    if breaks is None:
        breaks = default_breaks(np.asarray(data["ts"]), timeframe_seconds)
    state = state or {}
    return compute_features_many(
        data,
        timeframe_seconds=timeframe_seconds,
        bars_per_day=bars_per_day,
        breaks=breaks,
        bounds=np.array([0, n], dtype=np.int64),
        emit_from=np.array([emit_from], dtype=np.int64),
        state={c: np.array([np.nan if state.get(c) is None else state[c]], dtype=np.float64) for c in RECURSIVE},
        row_offset=np.array([row_offset], dtype=np.int64),
    )


def compute_features_many(
    data: Mapping[str, np.ndarray],
    *,
    timeframe_seconds: int,
    bars_per_day: int | None,
    breaks: np.ndarray,
    bounds: np.ndarray,
    emit_from: np.ndarray,
    state: Mapping[str, np.ndarray],
    row_offset: np.ndarray,
) -> dict[str, np.ndarray]:
    """`compute_features` of many series of one timeframe and bars_per_day in one pass over
    their concatenated rows: series s is rows bounds[s]:bounds[s+1], with its own `emit_from`
    (index in the series), `row_offset` and `state` (arrays, one value per series; NaN: none).
    No window, recursion or look-back crosses a series boundary. Returns the rows each series
    emits (from its emit_from on), series after series."""
    close = _col(data, "close")
    bounds = np.ascontiguousarray(bounds, dtype=np.int64)
    emit_from = np.ascontiguousarray(emit_from, dtype=np.int64)
    offsets = np.ascontiguousarray(row_offset, dtype=np.int64)
    breaks = np.ascontiguousarray(breaks, dtype=np.bool_)
    high, low, volume = _col(data, "high"), _col(data, "low"), _col(data, "volume")
    # pos: bars since the stretch started (huge if it started before the data); reach: rows
    # back that are in the data and in the same stretch; local: row number in its series.
    seg_start, pos, reach, local = _layout_kernel(breaks, bounds)

    out: dict[str, np.ndarray] = {}
    prev_close = _prev_kernel(close, reach)

    log_ret = _log_ratio(close, prev_close)
    out["volatility_20"] = _rolling_std(log_ret, 20, pos, bounds, offsets, min_pos=20)
    out["volatility_50"] = _rolling_std(log_ret, 50, pos, bounds, offsets, min_pos=50)

    sma_20 = _rolling_mean(close, 20, pos, bounds, offsets)
    sma_50 = _rolling_mean(close, 50, pos, bounds, offsets)
    out["sma_20"], out["sma_50"] = sma_20, sma_50
    close_std_20 = _rolling_std(close, 20, pos, bounds, offsets, min_pos=19)

    # True range: the first bar of a stretch has no previous close, so TR = high - low.
    tr, gains, losses = _true_range_moves(high, low, close, prev_close, breaks & (pos == 0))

    out.update(_recursive_features(close, tr, gains, losses, breaks, bounds, emit_from, state))
    vol_20 = _rolling_mean(volume, 20, pos, bounds, offsets)
    out["rolling_volume_20"] = vol_20
    horizons = horizon_bars(timeframe_seconds=timeframe_seconds, bars_per_day=bars_per_day)
    w = STRUCTURE_WINDOW
    row = _row_features(
        close,
        high,
        low,
        volume,
        _col(data, "taker_buy_volume"),
        _col(data, "liquidations"),
        _col(data, "open_interest"),
        reach,
        horizons["return_1h"] or 0,
        horizons["return_1d"] or 0,
        sma_20,
        sma_50,
        close_std_20,
        vol_20,
        _window_many(high, w, bounds, offsets, 1),
        _window_many(low, w, bounds, offsets, 2),
        w,
        _rolling_sum((high + low + close) / 3.0 * volume, 20, pos, bounds, offsets),
        _rolling_sum(volume, 20, pos, bounds, offsets),
    )
    out.update(zip(_ROW_FEATURES, row, strict=True))
    out["long_short_ratio"] = _col(data, "long_short_account_ratio").copy()
    out["exchange_inflow"] = _col(data, "exchange_netflow").copy()
    out["funding_rate_percentile"] = _funding_percentile(_col(data, "funding_rate"), seg_start)

    if emit_from.any():
        emitted = local >= np.repeat(emit_from, np.diff(bounds))
        out = {k: v[emitted] for k, v in out.items()}
    return out


# --- building blocks -------------------------------------------------------


def _recursive_features(close, tr, gains, losses, breaks, bounds, emit_from, state: Mapping[str, np.ndarray]):
    """ATR, EMA and RSI with its two averages: the recursions, continued from `state`."""

    def recursive(x, period, wilder, seed_offset, name, skip=0):
        values = np.ascontiguousarray(state[name], dtype=np.float64) if name in state else _nan(len(bounds) - 1)
        return _recursive_kernel(
            np.ascontiguousarray(x, dtype=np.float64),
            period,
            wilder,
            seed_offset,
            breaks,
            bounds,
            emit_from,
            values,
            skip,
        )

    out = {
        "atr_14": recursive(tr, ATR_PERIOD, True, ATR_PERIOD - 1, "atr_14"),
        "ema_20": recursive(close, EMA_PERIOD, False, EMA_PERIOD - 1, "ema_20"),
    }
    # RSI's averages start one bar later: the first bar of a stretch has no change.
    avg_gain = recursive(gains, RSI_PERIOD, True, RSI_PERIOD, "rsi_avg_gain", skip=1)
    avg_loss = recursive(losses, RSI_PERIOD, True, RSI_PERIOD, "rsi_avg_loss", skip=1)
    out["rsi_avg_gain"], out["rsi_avg_loss"] = avg_gain, avg_loss
    out["rsi_14"] = _rsi_kernel(avg_gain, avg_loss)
    return out


_ROW_FEATURES = (
    "return_1h",
    "return_1d",
    "bb_upper_20",
    "bb_lower_20",
    "trend_direction",
    "market_structure",
    "volume_spike_score",
    "vwap_20",
    "hl_range",
    "delta",
    "buy_sell_ratio",
    "liquidation_intensity",
    "open_interest_change",
)


@njit(cache=True, error_model="numpy")
def _row_features(
    close,
    high,
    low,
    volume,
    taker_buy,
    liq,
    oi,
    reach,
    k_hour,
    k_day,
    sma_20,
    sma_50,
    std_20,
    vol_20,
    hh,
    ll,
    w,
    pv,
    vsum,
):  # pragma: no cover - compiled
    """The features that combine a row's own inputs with values computed before, in one pass:
    returns over the horizons (k bars back in the stretch; k = 0: undefined), Bollinger bands,
    trend (close, SMA20 and SMA50 stacked), market structure (the last w bars' highest high and
    lowest low against the w before), volume spike (against the previous bar's 20-bar mean),
    VWAP, high-low range, taker delta and buy/sell ratio, liquidation intensity, OI change."""
    n = len(close)
    nan = np.nan
    r1h, r1d, bbu, bbl = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    trend, structure, spike, vwap = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    hl, delta, bsr, liq_int, oi_chg = np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    for i in range(n):
        p = reach[i]  # a row k back must be in the data, in the same series and stretch
        c = close[i]
        r1h[i] = c / close[i - k_hour] - 1.0 if k_hour and p >= k_hour else nan
        r1d[i] = c / close[i - k_day] - 1.0 if k_day and p >= k_day else nan
        bbu[i] = sma_20[i] + 2.0 * std_20[i]
        bbl[i] = sma_20[i] - 2.0 * std_20[i]
        s20, s50 = sma_20[i], sma_50[i]
        if s50 != s50:
            trend[i] = nan
        elif c > s20 and s20 > s50:
            trend[i] = 1.0
        elif c < s20 and s20 < s50:
            trend[i] = -1.0
        else:
            trend[i] = 0.0
        hp = hh[i - w] if p >= w else nan
        lp = ll[i - w] if p >= w else nan
        if hp != hp or lp != lp:
            structure[i] = nan
        elif hh[i] > hp and ll[i] > lp:
            structure[i] = 1.0
        elif hh[i] < hp and ll[i] < lp:
            structure[i] = -1.0
        else:
            structure[i] = 0.0
        prior = vol_20[i - 1] if p >= 1 else nan
        spike[i] = volume[i] / prior if prior > 0 else nan
        vwap[i] = pv[i] / vsum[i] if vsum[i] > 0 else nan
        hl[i] = (high[i] - low[i]) / c
        sell = volume[i] - taker_buy[i]
        delta[i] = taker_buy[i] - sell
        bsr[i] = taker_buy[i] / sell if sell > 0 else nan
        liq_int[i] = liq[i] / volume[i] if volume[i] > 0 else nan
        prev_oi = oi[i - 1] if p >= 1 else nan
        oi_chg[i] = oi[i] / prev_oi - 1.0 if prev_oi > 0 else nan
    return r1h, r1d, bbu, bbl, trend, structure, spike, vwap, hl, delta, bsr, liq_int, oi_chg


_HUGE = 2**62


@njit(cache=True)
def _layout_kernel(breaks, bounds):  # pragma: no cover - compiled
    """Per row: seg_start (the row that started its stretch: the series' first row for a
    stretch that began before the data), pos (bars since that start; huge for a stretch that
    began before the data), reach = min(pos, rows before it in its series) and local (its
    index in its series)."""
    n = len(breaks)
    seg_start = np.empty(n, dtype=np.int64)
    pos = np.empty(n, dtype=np.int64)
    reach = np.empty(n, dtype=np.int64)
    local = np.empty(n, dtype=np.int64)
    for s in range(len(bounds) - 1):
        lo = bounds[s]
        current = lo
        before = _HUGE
        for i in range(lo, bounds[s + 1]):
            if breaks[i]:
                current = i
                before = 0
            seg_start[i] = current
            p = i - current + before
            pos[i] = p
            local[i] = i - lo
            reach[i] = p if p < i - lo else i - lo
    return seg_start, pos, reach, local


@njit(cache=True)
def _prev_kernel(x, reach):  # pragma: no cover - compiled
    out = np.empty(len(x))
    for i in range(len(x)):
        out[i] = x[i - 1] if reach[i] >= 1 else np.nan
    return out


@njit(cache=True)
def _breaks_kernel(ts, step):  # pragma: no cover - compiled
    out = np.empty(len(ts), dtype=np.bool_)
    for i in range(len(ts)):
        out[i] = i == 0 or ts[i] - ts[i - 1] != step
    return out


@njit(cache=True)
def _rsi_kernel(avg_gain, avg_loss):  # pragma: no cover - compiled
    out = np.empty(len(avg_gain))
    for i in range(len(avg_gain)):
        moved = avg_gain[i] + avg_loss[i]
        out[i] = 100.0 * (avg_gain[i] / moved) if moved > 0 else np.nan
    return out


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


@njit(cache=True, inline="always")
def _combine(a, b, kind):  # pragma: no cover - compiled
    if kind == 0:
        return a + b
    if a != a or b != b:
        return np.nan
    if kind == 1:
        return a if a > b else b
    return a if a < b else b


@njit(cache=True)
def _window_into(x, w, offset, kind, out):  # pragma: no cover - compiled
    """out[i] = sum (kind 0), max (1) or min (2) over the window x[i-w+1..i]; NaN before w-1.

    Van Herk / Gil-Werman blocks of w rows, aligned to the *global* row number
    (offset + i): a window is the suffix of one block plus the prefix of the next, each
    accumulated from its block's edge. So every value is the same fixed sequence of
    operations over the window's own values, whatever row the array starts at: an
    incremental run that passes the right offset gets the full run's bits, in O(n).
    The suffix of the window starting at s is parked in out[s + w - 1], the slot that
    window's result goes to, so no scratch array is needed.
    """
    n = len(x)
    if n == 0:
        return
    # r = (offset + j) % w, stepped instead of recomputed: integer division is slow.
    q = 0.0
    r = (offset + n - 1) % w
    for j in range(n - 1, -1, -1):
        v = x[j]
        if j == n - 1 or r == w - 1:
            q = v
        else:
            q = _combine(v, q, kind)
        if j + w - 1 < n:
            out[j + w - 1] = q
        r = r - 1 if r > 0 else w - 1
    p = 0.0
    r = offset % w  # block position of row i
    rs = (offset - w + 1) % w  # block position of row i - w + 1
    for i in range(n):
        v = x[i]
        if i == 0 or r == 0:
            p = v
        else:
            p = _combine(p, v, kind)
        if i < w - 1:
            out[i] = np.nan
        elif rs == 0:
            out[i] = p
        else:
            out[i] = _combine(out[i], p, kind)
        r = r + 1 if r < w - 1 else 0
        rs = rs + 1 if rs < w - 1 else 0


@njit(cache=True)
def _window_kernel(x, w, offset, kind):  # pragma: no cover - compiled
    out = np.empty(len(x))
    _window_into(x, w, offset, kind, out)
    return out


@njit(cache=True)
def _window_many_kernel(x, w, bounds, offsets, kind):  # pragma: no cover - compiled
    """`_window_into` of each series' rows, aligned to its own row numbers (offsets[s])."""
    out = np.empty(len(x))
    for s in range(len(bounds) - 1):
        a, b = bounds[s], bounds[s + 1]
        _window_into(x[a:b], w, offsets[s], kind, out[a:b])
    return out


@njit(cache=True)
def _std_many_kernel(x, w, bounds, offsets):  # pragma: no cover - compiled
    out = np.empty(len(x))
    sq = np.empty(len(x))
    for s in range(len(bounds) - 1):
        a, b = bounds[s], bounds[s + 1]
        _std_into(x[a:b], w, offsets[s], out[a:b], sq[a:b])
    return out


@njit(cache=True)
def _std_into(x, w, offset, out, sq):  # pragma: no cover - compiled
    """Population standard deviation over each window, as TA-Lib: sqrt(E[x^2] - E[x]^2).
    The sums of x and x^2 use the same block structure as `_window_into`, in one pass each way."""
    n = len(x)
    if n == 0:
        return
    q1 = 0.0
    q2 = 0.0
    r = (offset + n - 1) % w
    for j in range(n - 1, -1, -1):
        v = x[j]
        if j == n - 1 or r == w - 1:
            q1 = v
            q2 = v * v
        else:
            q1 = v + q1
            q2 = v * v + q2
        if j + w - 1 < n:
            out[j + w - 1] = q1
            sq[j + w - 1] = q2
        r = r - 1 if r > 0 else w - 1
    p1 = 0.0
    p2 = 0.0
    r = offset % w
    rs = (offset - w + 1) % w
    for i in range(n):
        v = x[i]
        if i == 0 or r == 0:
            p1 = v
            p2 = v * v
        else:
            p1 = p1 + v
            p2 = p2 + v * v
        if i < w - 1:
            out[i] = np.nan
        else:
            if rs == 0:
                s1 = p1
                s2 = p2
            else:
                s1 = out[i] + p1
                s2 = sq[i] + p2
            mean = s1 / w
            var = s2 / w - mean * mean
            out[i] = math.sqrt(var) if var > 0.0 else (0.0 if var == var else np.nan)
        r = r + 1 if r < w - 1 else 0
        rs = rs + 1 if rs < w - 1 else 0


@njit(cache=True)
def _true_range_moves(high, low, close, prev_close, first):  # pragma: no cover - compiled
    """True range (high - low on the first bar of a stretch), gains and losses of the close."""
    n = len(close)
    tr = np.empty(n)
    gains = np.empty(n)
    losses = np.empty(n)
    for i in range(n):
        h = high[i]
        lo = low[i]
        pc = prev_close[i]
        hl = h - lo
        if first[i]:
            tr[i] = hl
        elif pc != pc:
            tr[i] = hl
        else:
            a = abs(h - pc)
            b = abs(lo - pc)
            m = hl if hl > a else a
            tr[i] = m if m > b else b
        if pc != pc:
            gains[i] = np.nan
            losses[i] = np.nan
        else:
            d = close[i] - pc
            gains[i] = d if d > 0.0 else 0.0
            losses[i] = -d if d < 0.0 else 0.0
    return tr, gains, losses


def _window_many(x: np.ndarray, w: int, bounds: np.ndarray, offsets: np.ndarray, kind: int = 0) -> np.ndarray:
    return _window_many_kernel(np.ascontiguousarray(x, dtype=np.float64), w, bounds, offsets, kind)


@njit(cache=True)
def _masked_window(x, w, bounds, offsets, kind, scale, pos, min_pos):  # pragma: no cover - compiled
    out = _window_many_kernel(x, w, bounds, offsets, kind)
    for i in range(len(x)):
        out[i] = np.nan if pos[i] < min_pos else out[i] * scale
    return out


def _rolling_sum(x: np.ndarray, w: int, pos, bounds, offsets, *, min_pos: int | None = None) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float64)
    return _masked_window(x, w, bounds, offsets, 0, 1.0, pos, w - 1 if min_pos is None else min_pos)


def _rolling_mean(x: np.ndarray, w: int, pos, bounds, offsets) -> np.ndarray:
    """Sum over the window, then divided by w (as TA-Lib's SMA does)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = _masked_window(x, w, bounds, offsets, 0, 1.0, pos, w - 1)
    out /= w
    return out


def _rolling_std(x: np.ndarray, w: int, pos, bounds, offsets, *, min_pos: int) -> np.ndarray:
    """Population standard deviation (ddof=0) over w values, as TA-Lib: E[x^2] - E[x]^2."""
    out = _std_many_kernel(np.ascontiguousarray(x, dtype=np.float64), w, bounds, offsets)
    out[pos < min_pos] = np.nan
    return out


@njit(cache=True)
def _log_ratio(a, b):  # pragma: no cover - compiled
    """log(a/b) element by element with the scalar libm: numpy's SIMD log may round an
    element differently depending on where it falls in the array, which would break
    incremental = full."""
    out = np.empty(len(a))
    for i in range(len(a)):
        out[i] = math.log(a[i] / b[i]) if b[i] == b[i] else np.nan
    return out


@njit(cache=True)
def _recur(x, y, start, end, period, wilder):  # pragma: no cover - compiled
    """Continue y from y[start] over x[start+1:end]: Wilder (y*(p-1) + x)/p, or TA-Lib's
    EMA (x - y)*k + y with k = 2/(p+1)."""
    v = y[start]
    k = 2.0 / (period + 1)
    keep = float(period - 1)
    inv = 1.0 / period  # a multiplication instead of a division on the loop-carried chain
    if wilder:
        for t in range(start + 1, end):
            v = (v * keep + x[t]) * inv
            y[t] = v
    else:
        for t in range(start + 1, end):
            v = (x[t] - v) * k + v
            y[t] = v


@njit(cache=True)
def _seed(x, a, b, period):  # pragma: no cover - compiled
    acc = 0.0
    for t in range(a, b):  # sequential, as TA-Lib sums its seed
        acc += x[t]
    return acc / period


@njit(cache=True)
def _recursive_kernel(x, period, wilder, seed_offset, breaks, bounds, emit_from, state, skip):  # pragma: no cover
    """y[s] = mean of the first `period` inputs of a stretch (after `skip`), then the
    Wilder or EMA recursion, per series. A stretch whose start is in the data is computed from
    its seed; one that started before the data (no break on the series' first row) continues
    from state[series], the stored value at its row emit_from - 1. Stretches that end before
    the series' emit_from are skipped (nothing of them is emitted)."""
    y = np.full(len(x), np.nan)
    for s in range(len(bounds) - 1):
        lo, hi = bounds[s], bounds[s + 1]
        first_emitted = lo + emit_from[s]
        a = lo
        while a < hi:
            b = a + 1
            while b < hi and not breaks[b]:
                b += 1
            if b > first_emitted:
                if breaks[a]:
                    start = a + seed_offset
                    if start < b:
                        y[start] = _seed(x, a + skip, start + 1, period)
                        _recur(x, y, start, b, period, wilder)
                elif emit_from[s] != 0 and state[s] == state[s]:
                    start = first_emitted - 1
                    y[start] = state[s]
                    _recur(x, y, start, b, period, wilder)
            a = b
    return y


@njit(cache=True)
def _percentile_kernel(vals, w):  # pragma: no cover - compiled
    m = len(vals)
    out = np.empty(m - w + 1)
    for j in range(w - 1, m):
        cur = vals[j]
        count = 0
        for k in range(j - w + 1, j + 1):
            if vals[k] <= cur:
                count += 1
        out[j - w + 1] = 100.0 * count / w
    return out


def _funding_percentile(funding: np.ndarray, seg_start: np.ndarray) -> np.ndarray:
    """Percent (0-100] of the last FUNDING_WINDOW funding observations in the stretch
    that are <= this one; only on rows that carry a funding rate."""
    out = _nan(len(funding))
    where = np.flatnonzero(~np.isnan(funding))
    w = FUNDING_WINDOW
    if len(where) < w:
        return out
    pct = _percentile_kernel(np.ascontiguousarray(funding[where]), w)
    same_stretch = seg_start[where[: len(where) - w + 1]] == seg_start[where[w - 1 :]]
    out[where[w - 1 :]] = np.where(same_stretch, pct, np.nan)
    return out


def context_start(funding: np.ndarray, emit_from: int, *, timeframe_seconds: int, bars_per_day: int | None) -> int:
    """First row an incremental run from `emit_from` must read."""
    start = emit_from - lookback_bars(timeframe_seconds=timeframe_seconds, bars_per_day=bars_per_day)
    earlier = np.flatnonzero(~np.isnan(np.asarray(funding[:emit_from], dtype=np.float64)))
    if len(earlier):
        start = min(start, int(earlier[max(0, len(earlier) - (FUNDING_WINDOW - 1))]))
    return max(0, start)


def ta_indicators(data: Mapping[str, np.ndarray], *, timeframe_seconds: int) -> dict[str, np.ndarray]:
    """Only the indicators TA-Lib also computes (ATR, RSI, SMA 20/50, EMA 20, rolling std of
    log returns 20/50, volume mean 20), through the same code as `compute_features`; the
    benchmark times these against TA-Lib, and a test checks they equal the full computation."""
    close, high, low, volume = (_col(data, c) for c in ("close", "high", "low", "volume"))
    n = len(close)
    breaks = default_breaks(np.asarray(data["ts"]), timeframe_seconds)
    bounds = np.array([0, n], dtype=np.int64)
    offsets, emit_from, none = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), _nan(1)
    _, pos, reach, _ = _layout_kernel(breaks, bounds)
    prev_close = _prev_kernel(close, reach)
    tr, gains, losses = _true_range_moves(high, low, close, prev_close, breaks & (pos == 0))

    def recursive(x, period, wilder, seed_offset, skip=0):
        return _recursive_kernel(x, period, wilder, seed_offset, breaks, bounds, emit_from, none, skip)

    avg_gain = recursive(gains, RSI_PERIOD, True, RSI_PERIOD, skip=1)
    avg_loss = recursive(losses, RSI_PERIOD, True, RSI_PERIOD, skip=1)
    log_ret = _log_ratio(close, prev_close)
    rsi = _rsi_kernel(avg_gain, avg_loss)
    return {
        "atr_14": recursive(tr, ATR_PERIOD, True, ATR_PERIOD - 1),
        "rsi_14": rsi,
        "sma_20": _rolling_mean(close, 20, pos, bounds, offsets),
        "sma_50": _rolling_mean(close, 50, pos, bounds, offsets),
        "ema_20": recursive(close, EMA_PERIOD, False, EMA_PERIOD - 1),
        "volatility_20": _rolling_std(log_ret, 20, pos, bounds, offsets, min_pos=20),
        "volatility_50": _rolling_std(log_ret, 50, pos, bounds, offsets, min_pos=50),
        "rolling_volume_20": _rolling_mean(volume, 20, pos, bounds, offsets),
    }
