"""CPU per series of the feature computation alone (no database): 5,000 daily series of 250
bars on the NASDAQ calendar, from scratch and as one-new-bar tails (53 rows read, 1 emitted),
computed one series at a time (`compute_rows`) and, where the checkout has it, in chunks of 500
series at once (`compute_many`, as the chunked paths call it). Run from the checkout to measure
(so the same script times the code before and after a change):

    cd <checkout> && flock /work/lead/bench.lock .venv/bin/python <this file> [N] [--repeat 3]

Prints process CPU time (best of the repeats) in ms per series.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time

sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mytrader.settings")
os.environ.setdefault("DEBUG", "on")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from enrichment.candles import candle_quality  # noqa: E402
from enrichment.candles.services import feature_compute as fc  # noqa: E402
from etl.calendars import exchange_calendar  # noqa: E402

BARS, TAIL, CHUNK = 250, 53, 500


def series_data(rng, n):
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    data = {c: np.full(n, np.nan) for c in (*fc.INPUT_COLUMNS, *fc.RECURSIVE)}
    data.update(open=close, high=close * 1.01, low=close * 0.99, close=close, volume=rng.uniform(1e5, 1e6, n))
    return data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int, nargs="?", default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cal = exchange_calendar("XNAS", "America/New_York")
    key = fc.SeriesKey(symbol=None, timeframe="1d", seconds=86400, calendar=cal)
    bpd = candle_quality.bars_per_day(cal, 86400)
    ts = pd.bdate_range("2025-01-02", periods=BARS + 10, tz="UTC")[:BARS].asi8 // 10**9
    rng = np.random.default_rng(1)
    all_data = [series_data(rng, BARS) for _ in range(args.n)]
    takes_bpd = len(inspect.signature(fc.compute_rows).parameters) == 3

    def one(data, scratch):
        if scratch:
            rows = fc.context_rows(
                key, ts_seconds=ts, data=data, dirty_seconds=int(ts[0]), row_offset=0, prev_seconds=None
            )
        else:
            rows = fc.context_rows(
                key,
                ts_seconds=ts[-TAIL:],
                data={c: v[-TAIL:] for c, v in data.items()},
                dirty_seconds=int(ts[-1]),
                row_offset=BARS - TAIL,
                prev_seconds=int(ts[-TAIL - 1]),
            )
        return fc.compute_rows(key, rows, bpd) if takes_bpd else fc.compute_rows(key, rows)

    def per_series(scratch):
        for data in all_data:
            one(data, scratch)

    def many(scratch):
        part = slice(None) if scratch else slice(BARS - TAIL, None)
        length = BARS if scratch else TAIL
        for lo in range(0, args.n, CHUNK):
            group = all_data[lo : lo + CHUNK]
            m = len(group)
            rows = fc.ManyRows(
                ts_seconds=np.tile(ts[part], m),
                data={c: np.concatenate([d[c][part] for d in group]) for c in group[0]},
                bounds=np.arange(m + 1, dtype=np.int64) * length,
                emit_from=np.full(m, 0 if scratch else TAIL - 1, dtype=np.int64),
                row_offset=np.full(m, 0 if scratch else BARS - TAIL, dtype=np.int64),
                prev_seconds=np.full(m, candle_quality.NO_PREV if scratch else int(ts[-TAIL - 1]), dtype=np.int64),
            )
            fc.compute_many([key] * m, rows)

    one(all_data[0], True)
    one(all_data[0], False)
    runs = [("per series", per_series)]
    if hasattr(fc, "compute_many"):
        many(True)
        many(False)
        runs.append((f"compute_many, chunks of {CHUNK}", many))
    print(f"{args.n} series x {BARS} daily bars; load {os.getloadavg()[0]:.2f}")
    for name, fn in runs:
        for scratch in (True, False):
            cpu = []
            for _ in range(args.repeat):
                t = time.process_time()
                fn(scratch)
                cpu.append(time.process_time() - t)
            label = "from scratch" if scratch else f"one-bar tail ({TAIL} rows)"
            print(f"  {name:28} {label:26} {min(cpu) * 1000 / args.n:.3f} ms CPU a series")
    print(f"load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
