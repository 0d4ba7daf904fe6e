"""What every candle source returns: a DataFrame with `ts` (UTC, bar open time) and the
candle columns (`CANDLE_COLUMNS`; absent ones NULL), and the interface it implements."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import numpy as np
import pandas as pd

from enrichment.candles.models import CANDLE_COLUMNS
from etl.models import Symbol


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
