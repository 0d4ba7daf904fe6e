"""The feature list and the window lengths behind it: plain Python, no numpy or numba, so
the model (market_data_v2's columns), the selectors and the admin can import it without
paying for the kernels (`feature_kernels.py`), which import it too."""

from __future__ import annotations

ATR_PERIOD = 14
RSI_PERIOD = 14
EMA_PERIOD = 20
FUNDING_WINDOW = 90  # funding observations: 30 days at Binance's 8-hourly funding
STRUCTURE_WINDOW = 20  # market_structure compares the last 20 bars with the 20 before
# The longest bar window: volatility_50 needs 51 closes (50 returns).
LOOKBACK_BARS = 51

FEATURES: tuple[str, ...] = (
    # the old system's sixteen
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

# market_data_v2's feature columns: the features, then the stored recursive state.
FEATURE_COLUMNS: tuple[str, ...] = (*FEATURES, *STATE_COLUMNS)


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


def lookback_bars(*, timeframe_seconds: int, bars_per_day: int | None) -> int:
    """Rows of context an incremental run needs before its first new row (besides
    FUNDING_WINDOW - 1 earlier funding observations)."""
    horizons = horizon_bars(timeframe_seconds=timeframe_seconds, bars_per_day=bars_per_day)
    return max([LOOKBACK_BARS, 2 * STRUCTURE_WINDOW] + [k + 1 for k in horizons.values() if k])


_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def timeframe_seconds(timeframe: str) -> int:
    """'15m' -> 900, '1h' -> 3600, '1d' -> 86400, '1w' -> 604800 (ValueError otherwise)."""
    tf = timeframe.strip()
    number, unit = tf[:-1], tf[-1:].lower()
    if unit not in _UNIT_SECONDS or not number.isdigit() or int(number) <= 0:
        raise ValueError(f"unknown timeframe {timeframe!r}: use e.g. 1m, 15m, 1h, 4h, 1d, 1w")
    return int(number) * _UNIT_SECONDS[unit]
