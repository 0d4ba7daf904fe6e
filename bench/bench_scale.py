"""Scale benchmark (issue 14): N symbols x B daily bars, one file per symbol, through the pipeline.

    make bench-scale N=5000 B=250 [BENCH_SCALE_ARGS="--keep --steps ..."]
    .venv/bin/python bench/bench_scale.py [N] [B] [--steps a,b] [--keep] [--reuse] [--repeat 5]

On a database of its own (<your database>_bench_scale, created fresh and migrated) it:
1. generates N NASDAQ/NYSE symbols x B daily bars on each exchange's real trading days, one
   STANDARD-layout file per symbol (initial/NASDAQ/ABCD.csv, initial/NYSE/XYZ.csv), plus the
   hourly delivery: one file per symbol holding the next trading day's bar only
   (hourly/NASDAQ/ABCD.csv), the way a scraper drops each run's new bars in a folder of its own.
   numpy writes the bytes (no Python loop per row); the files are kept in var/bench/scale/.
2. runs each step as `run_pipeline --steps <step>` runs it (`etl.services.pipeline_run`, progress
   off), each in a child process of its own so that its peak RSS is its own:
   - bigfile: the reference for the import rate, one file of min(1 M, N x B) minute bars
     imported in a scratch database (<your database>_bench_scale_big) dropped afterwards;
   - import, sync, correct (execute with backup, default scope, then validate), features (from
     scratch), validate: the whole pipeline;
   - noop: the feature step again, with nothing new;
   - newbar: the hourly run over the hourly delivery: import, sync, correct and features
     (incremental) in one pipeline run, the steps an hourly pipeline runs. The import links each
     candle to its symbol as it writes it, so the sync has nothing left to link and the feature
     step sees the new bars at once; sync and correct stay in the run because the hourly
     pipeline runs them too (new tickers, asset classes to repair);
   - status: /api/etl/status, the admin dashboard (/admin/) and /metrics through Django's test
     client, logged in as a superuser (staff) for the first two, from 127.0.0.1 for /metrics: a
     first call, then --repeat calls whose median is the figure;
   - storage: bytes per candle of market_data and market_data_v2: pg_total_relation_size (heap,
     indexes, toast) summed over pg_partition_tree, so a partitioned table counts every partition;
   - reference: the plain script for features (below).
3. prints each figure with rows/s and peak memory: the child's peak RSS (VmHWM), and the
   PostgreSQL backends of the bench database, read cheaply from /proc/<pid>/status while the step
   runs (pids from pg_stat_activity, sampled every 0.2 s): the largest sum of RssAnon (private
   memory: sorts, hashes, caches) and the largest VmHWM (peak RSS including the shared buffers the
   backend touched). Needs the database on this host and /proc readable; otherwise blank.
4. the plain-script reference for features: one read of all candles (binary COPY of
   market_data_v2, ordered by series), TA-Lib per series for the eight indicators TA-Lib shares
   with our features (ATR 14 with a neutral first bar, RSI 14, SMA 20 and 50, EMA 20, SMA 20 of
   volume, population std of log returns over 20 and 50), one binary COPY into a staging table and
   one UPDATE ... FROM into market_data_v2, streamed (constant memory); then it checks, untimed,
   that it computed what our features stored, and rolls back. Printed: our features-from-scratch
   time over the reference's (target <= 1.0).
5. prints a markdown table with the issue's targets and whether each is met, and writes the raw
   figures as JSON to var/bench/scale-N<N>-B<B>-<time>.json.

Options: --steps runs a subset (in the order above); --keep leaves the database and the files in
place, --reuse starts from what a --keep run left (no new database, no regeneration) so a
developer can re-run one step on existing data: figures not re-measured come from the earlier run
(results.json beside the files) and are marked so. A step re-run measures the data as it is: a
second `features` is incremental, a second `import` of the same files skips them. The new-bar step
is the exception: with --keep its first run saves the database as it was before it
(<database>_before_newbar) and a --reuse run restores that copy before the step, so
`--reuse --keep --steps newbar` re-measures the same hourly run on the same data each time.

Targets of the issue are for 100,000 symbols x 250 bars; at other sizes the pipeline, no-op and
new-bar targets are scaled linearly (per candle, per series, per symbol) and the table says so.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import talib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mytrader.settings")
os.environ.setdefault("DEBUG", "on")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from psycopg import sql  # noqa: E402

from batchimport.parsing import STANDARD_HEADER  # noqa: E402
from etl import calendars  # noqa: E402
from etl.services import pipeline_run  # noqa: E402

STEPS = (
    "bigfile",
    "import",
    "sync",
    "correct",
    "features",
    "validate",
    "noop",
    "newbar",
    "status",
    "storage",
    "reference",
)
PIPELINE = ("import", "sync", "correct", "features", "validate")
CHILD_STEPS = {"bigfile", *PIPELINE, "noop", "newbar", "status", "reference"}
# The first trading day on or after this date is the hourly run's new bar; the B bars before it
# are the initial files. A fixed date keeps the files the same from run to run.
NEW_BAR_FROM = date(2025, 1, 2)
BIG_FILE_ROWS = 1_000_000  # the one-big-file rate is for a 1 M-row file
BENCH_DIR = ROOT / "var" / "bench"
PAGES = {"api_etl_status": "/api/etl/status", "dashboard": "/admin/", "metrics": "/metrics"}
# The targets, for 100,000 symbols x 250 bars on this 2-core machine.
TARGET_PIPELINE_SECONDS_25M = 30 * 60
TARGET_NOOP_SECONDS_100K = 10.0
TARGET_NEWBAR_SECONDS_100K = 60.0
TARGET_PAGE_MS = 200.0
TARGET_IMPORT_SHARE = 0.5
TARGET_BYTES = {"market_data": 200, "market_data_v2": 400}
TARGET_PEAK_MB = 1024


# ---------------------------------------------------------------- generation (numpy, no ORM)


def _letters(codes: np.ndarray, width: int) -> np.ndarray:
    """Integer codes as upper-case tickers of `width` letters, one row of bytes each."""
    out = np.empty((len(codes), width), dtype=np.uint8)
    rest = codes.astype(np.int64)
    for k in range(width - 1, -1, -1):
        out[:, k] = 65 + rest % 26
        rest //= 26
    return out


def tickers(n: int, seed: int = 14) -> dict[str, np.ndarray]:
    """Distinct tickers, as (count, 4) byte rows padded with 0: NASDAQ four letters, NYSE three
    (four once the 17,576 three-letter ones run out), none on both markets."""
    rng = np.random.default_rng(seed)
    n_nasdaq, n_nyse = (n + 1) // 2, n // 2
    three = min(n_nyse, 26**3)
    four = rng.choice(26**4, size=n_nasdaq + n_nyse - three, replace=False)
    nyse = np.zeros((n_nyse, 4), dtype=np.uint8)
    nyse[:three, :3] = _letters(rng.choice(26**3, size=three, replace=False), 3)
    nyse[three:] = _letters(four[n_nasdaq:], 4)
    return {"NASDAQ": _letters(four[:n_nasdaq], 4), "NYSE": nyse}


def bar_days(calendar_code: str, bars: int) -> list[date]:
    """The `bars` trading days before the new bar's day, then that day (bars + 1 in all)."""
    weekdays = tuple((day * 1440, (day + 1) * 1440) for day in range(5))
    calendar = calendars.exchange_calendar(calendar_code, "UTC", intervals=weekdays)
    new_day = calendars.trading_days(calendar, first=NEW_BAR_FROM, count=1)[0]
    span = bars * 7 // 5 + 30
    while True:
        days = calendars.trading_days(calendar, first=new_day - timedelta(days=span), count=bars * 2 + 60)
        before = [d for d in days if d < new_day]
        if len(before) >= bars:
            return [*before[-bars:], new_day]
        span *= 2


def _stamp_bytes(stamps: np.ndarray, width: int) -> np.ndarray:
    """datetime64 values as 'YYYY-MM-DD' (width 10) or 'YYYY-MM-DD HH:MM:SS' (19) byte rows."""
    text = np.datetime_as_string(stamps, unit="D" if width == 10 else "s").astype(f"S{width}")
    out = text.view(np.uint8).reshape(len(stamps), width).copy()
    if width == 19:
        out[:, 10] = ord(" ")
    return out


def _put_number(buf: np.ndarray, pos: int, value: np.ndarray, int_digits: int, decimals: int) -> int:
    """Write integers (in units of 10**-decimals) as decimal text at column `pos`; leading zeros
    are 0 bytes, dropped later. Returns the column after the field."""
    rest = value.astype(np.int64)
    width = int_digits + (decimals + 1 if decimals else 0)
    for k in range(decimals):
        buf[..., pos + width - 1 - k] = 48 + rest % 10
        rest = rest // 10
    if decimals:
        buf[..., pos + int_digits] = ord(".")
    for k in range(int_digits):
        buf[..., pos + int_digits - 1 - k] = np.where((rest > 0) | (k == 0), 48 + rest % 10, 0)
        rest = rest // 10
    return pos + width


def walk(rng: np.random.Generator, symbols: int, bars: int, sigma: float) -> dict[str, np.ndarray]:
    """Random-walk candles in cents (open = previous close, low <= open, close <= high)."""
    start = rng.uniform(5, 500, symbols)
    close = start[:, None] * np.exp(np.cumsum(rng.normal(0, sigma, (symbols, bars)), axis=1))
    close_c = np.clip(np.rint(close * 100), 1, 9_000_000).astype(np.int64)
    open_c = np.concatenate([np.rint(start * 100).astype(np.int64)[:, None], close_c[:, :-1]], axis=1)
    top, bottom = np.maximum(open_c, close_c), np.minimum(open_c, close_c)
    wick = np.abs(rng.normal(0, sigma / 4, (2, symbols, bars))) * close_c
    return {
        "open": open_c,
        "high": np.minimum(top + np.rint(wick[0]).astype(np.int64), 9_999_999),
        "low": np.maximum(bottom - np.rint(wick[1]).astype(np.int64), 1),
        "close": close_c,
        "adj": np.maximum(np.rint(close_c * 0.97).astype(np.int64), 1),
        "volume": rng.integers(1_000, 5_000_000, (symbols, bars)),
    }


def standard_rows(ticker: np.ndarray, stamps: np.ndarray, candles: dict[str, np.ndarray]) -> tuple[bytes, np.ndarray]:
    """STANDARD-layout lines for (symbols, bars) candles: the bytes, and each line's length."""
    symbols, bars = candles["close"].shape
    width = ticker.shape[1] + stamps.shape[1] + 5 * 9 + 7 + 3
    buf = np.zeros((symbols, bars, width), dtype=np.uint8)
    pos = ticker.shape[1]
    buf[:, :, :pos] = ticker[:, None, :]
    buf[:, :, pos] = ord(",")
    buf[:, :, pos + 1 : pos + 1 + stamps.shape[1]] = stamps[None, :, :]
    pos += 1 + stamps.shape[1]
    for name in ("open", "high", "low", "close", "adj"):
        buf[:, :, pos] = ord(",")
        pos = _put_number(buf, pos + 1, candles[name], 5, 2)
    buf[:, :, pos] = ord(",")
    pos = _put_number(buf, pos + 1, candles["volume"], 7, 0)
    buf[:, :, pos] = ord("\n")
    kept = buf != 0
    return buf[kept].tobytes(), kept.sum(axis=2)


HEADER = (",".join(STANDARD_HEADER) + "\n").encode()


def _write_market(root: Path, market: str, codes: np.ndarray, bars: int, seed: int) -> int:
    """One market's initial files (B bars) and hourly files (the next bar), chunk by chunk."""
    days = np.array(bar_days({"NASDAQ": "XNAS", "NYSE": "XNYS"}[market], bars), dtype="datetime64[D]")
    stamps = _stamp_bytes(days, 10)
    (root / "initial" / market).mkdir(parents=True, exist_ok=True)
    (root / "hourly" / market).mkdir(parents=True, exist_ok=True)
    chunk = max(1, 64_000_000 // ((bars + 1) * 80))
    written = 0
    for first in range(0, len(codes), chunk):
        part = codes[first : first + chunk]
        rng = np.random.default_rng([seed, first])
        data, lengths = standard_rows(part, stamps, walk(rng, len(part), bars + 1, 0.02))
        ends = np.cumsum(lengths.ravel()).reshape(lengths.shape)
        for i, code in enumerate(part):
            name = bytes(code[code != 0]).decode() + ".csv"
            start = int(ends[i, 0] - lengths[i, 0])
            cut, stop = int(ends[i, bars - 1]), int(ends[i, bars])
            (root / "initial" / market / name).write_bytes(HEADER + data[start:cut])
            (root / "hourly" / market / name).write_bytes(HEADER + data[cut:stop])
            written += cut - start + stop - cut + 2 * len(HEADER)
    return written


def generate(root: Path, n: int, bars: int) -> dict:
    """Write every file of the run (a fresh folder); returns what was written and how fast."""
    started = time.perf_counter()
    shutil.rmtree(root, ignore_errors=True)
    written = 0
    for offset, (market, codes) in enumerate(tickers(n).items()):
        written += _write_market(root, market, codes, bars, seed=offset)
    big_rows = min(BIG_FILE_ROWS, n * bars)
    minutes = np.datetime64("2020-01-01T00:00") + np.arange(big_rows).astype("timedelta64[m]")
    big = walk(np.random.default_rng(7), 1, big_rows, 0.001)
    ticker = np.frombuffer(b"BIGFILE", dtype=np.uint8)[None, :]
    data, _ = standard_rows(ticker, _stamp_bytes(minutes.astype("datetime64[s]"), 19), big)
    (root / "bigfile" / "Crypto").mkdir(parents=True)
    (root / "bigfile" / "Crypto" / "BIGFILE.csv").write_bytes(HEADER + data)
    seconds = time.perf_counter() - started
    manifest = {"n": n, "bars": bars, "files": 2 * n + 1, "bytes": written + len(HEADER) + len(data)}
    manifest.update(seconds=seconds, big_rows=big_rows, new_bar_from=NEW_BAR_FROM.isoformat())
    (root / "manifest.json").write_text(json.dumps(manifest))
    return manifest


# ---------------------------------------------------------------- the steps (each in a child process)


def _pipeline(steps: list[str], options: dict | None = None) -> dict:
    """One pipeline run as `run_pipeline --steps ...` makes it (progress off): time and counts."""
    started = time.perf_counter()
    result = pipeline_run(steps=steps, options=options or {}, trigger="command", requested_by="bench-scale")
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "status": str(result.status),
        "error": result.error,
        "steps": {
            s.name: {"status": s.status, "seconds": s.duration_seconds, "counts": s.counts} for s in result.steps
        },
    }


def step_bigfile() -> dict:
    return _pipeline(["import"], {"path": "bigfile"})


def step_import() -> dict:
    return _pipeline(["import"], {"path": "initial"})


def step_newbar() -> dict:
    return _pipeline(["import", "sync", "correct", "features"], {"path": "hourly"})


def step_status(repeat: int) -> dict:
    """Each page: a first call, then `repeat` calls; the median of those is the figure."""
    user, _ = get_user_model().objects.get_or_create(
        username="bench-scale", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    pages = {}
    for name, url in PAGES.items():
        timings, codes = [], set()
        for _ in range(repeat + 1):
            started = time.perf_counter()
            response = client.get(url)
            timings.append(time.perf_counter() - started)
            codes.add(response.status_code)
        pages[name] = {"url": url, "first_ms": timings[0] * 1000, "median_ms": statistics.median(timings[1:]) * 1000}
        pages[name].update(runs_ms=[t * 1000 for t in timings[1:]], status_codes=sorted(codes))
    return {
        "seconds": None,
        "status": "succeeded" if all(p["status_codes"] == [200] for p in pages.values()) else "failed",
        "pages": pages,
    }


# ---------------------------------------------------------------- the plain-script reference for features

REF_COLUMNS = ("atr_14", "rsi_14", "sma_20", "sma_50", "ema_20", "rolling_volume_20", "volatility_20", "volatility_50")
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
COPY_TRAILER = b"\xff\xff"
# One row of the read: field count, then (length, value) per column; no column is ever NULL.
READ_ROW = np.dtype(
    [("n", ">i2")]
    + [(f, t) for name in ("symbol_id", "ts") for f, t in ((f"l_{name}", ">i4"), (name, ">i8"))]
    + [(f, t) for name in ("high", "low", "close", "volume") for f, t in ((f"l_{name}", ">i4"), (name, ">f8"))]
)
WRITE_ROW = np.dtype(
    [("n", ">i2"), ("l_symbol_id", ">i4"), ("symbol_id", ">i8"), ("l_ts", ">i4"), ("ts", ">i8")]
    + [(f, t) for name in REF_COLUMNS for f, t in ((f"l_{name}", ">i4"), (name, ">f8"))]
)
REF_READ_SQL = (
    "COPY (SELECT symbol_id::bigint, ts::timestamptz, high::float8, low::float8, close::float8, volume::float8"
    " FROM market_data_v2 WHERE ts < {until} ORDER BY symbol_id, ts) TO STDOUT (FORMAT binary)"
)
REF_STAGE_SQL = (
    "CREATE TEMP TABLE bench_reference_stage (symbol_id bigint, ts timestamptz, "
    + ", ".join(f"{c} float8" for c in REF_COLUMNS)
    + ")"
)
REF_UPDATE_SQL = (
    "UPDATE market_data_v2 v SET "  # noqa: S608 - our constants
    + ", ".join(f"{c} = NULLIF(s.{c}, 'NaN')" for c in REF_COLUMNS)
    + " FROM bench_reference_stage s WHERE v.symbol_id = s.symbol_id AND v.ts = s.ts"
)
# Per column: rows where the reference differs from what our feature step stored (NaN = NULL).
REF_CHECK_SQL = (
    "SELECT count(*), "  # noqa: S608 - our constants
    + ", ".join(
        f"count(*) FILTER (WHERE NOT coalesce((s.{c} = 'NaN' AND v.{c} IS NULL)"
        f" OR abs(s.{c} - v.{c}) <= 1e-6 * abs(v.{c}) + 1e-9, false))"
        for c in REF_COLUMNS
    )
    + " FROM bench_reference_stage s JOIN market_data_v2 v ON v.symbol_id = s.symbol_id AND v.ts = s.ts"
)


def talib_series(high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray) -> list[np.ndarray]:
    """The eight shared indicators of one series, in REF_COLUMNS order (NaN in warm-up)."""
    if len(close) < 2:
        return [np.full(len(close), np.nan)] * len(REF_COLUMNS)
    # A neutral first bar makes TA-Lib's first true range high - low, as ours (see the TA-Lib tests).
    atr = talib.ATR(np.r_[high[0], high], np.r_[low[0], low], np.r_[close[0], close], 14)[1:]
    returns = np.empty_like(close)
    returns[0] = np.nan
    np.log(close[1:] / close[:-1], out=returns[1:])
    return [
        atr,
        talib.RSI(close, 14),
        talib.SMA(close, 20),
        talib.SMA(close, 50),
        talib.EMA(close, 20),
        talib.SMA(volume, 20),
        talib.STDDEV(returns, 20, 1),
        talib.STDDEV(returns, 50, 1),
    ]


def _reference_rows(rows: np.ndarray) -> bytes:
    """The COPY rows (binary) of the complete series in `rows`."""
    sym = rows["symbol_id"]
    starts = np.flatnonzero(np.r_[True, sym[1:] != sym[:-1]])
    ends = np.r_[starts[1:], len(rows)]
    prices = {name: rows[name].astype(np.float64) for name in ("high", "low", "close", "volume")}
    out = np.empty(len(rows), dtype=WRITE_ROW)
    values = np.empty((len(REF_COLUMNS), len(rows)))
    for a, b in zip(starts, ends, strict=True):
        values[:, a:b] = talib_series(*(prices[name][a:b] for name in ("high", "low", "close", "volume")))
    out["n"] = 2 + len(REF_COLUMNS)
    out["l_symbol_id"] = out["l_ts"] = 8
    out["symbol_id"], out["ts"] = sym, rows["ts"]
    for i, name in enumerate(REF_COLUMNS):
        out[f"l_{name}"] = 8
        out[name] = values[i]
    return out.tobytes()


def _stream_reference(read_copy, write_copy, chunk_bytes: int) -> int:
    """Read the candles block by block; write the indicators of each complete series."""
    pending = bytearray()
    header_left, rows_done = len(COPY_SIGNATURE), 0
    for block in read_copy:
        pending += block
        if header_left:
            cut = min(header_left, len(pending))
            del pending[:cut]
            header_left -= cut
        if len(pending) < chunk_bytes:
            continue
        rows = np.frombuffer(bytes(pending[: len(pending) // READ_ROW.itemsize * READ_ROW.itemsize]), READ_ROW)
        last = np.flatnonzero(rows["symbol_id"] != rows["symbol_id"][-1])
        if not len(last):
            continue  # one series so far: wait for its end
        done = int(last[-1]) + 1
        write_copy.write(_reference_rows(rows[:done]))
        rows_done += done
        del pending[: done * READ_ROW.itemsize]
    if pending.endswith(COPY_TRAILER):
        del pending[-len(COPY_TRAILER) :]
    if pending:
        rows = np.frombuffer(bytes(pending), READ_ROW)
        write_copy.write(_reference_rows(rows))
        rows_done += len(rows)
    return rows_done


def step_reference(until: date, chunk_bytes: int = 32 << 20) -> dict:
    """The plain script: one read, TA-Lib per series, one COPY, one UPDATE ... FROM; rolled back."""
    # A second session reads while this one writes the staging table.
    params = connection.get_connection_params()
    reader = psycopg.connect(**{k: v for k, v in params.items() if k in ("dbname", "user", "password", "host", "port")})
    read_sql = sql.SQL(REF_READ_SQL).format(until=sql.Literal(datetime.combine(until, datetime.min.time(), UTC)))
    check: list[int] = []
    with transaction.atomic():
        started = time.perf_counter()
        with connection.cursor() as cur:
            cur.execute(REF_STAGE_SQL)
            with cur.copy("COPY bench_reference_stage FROM STDIN (FORMAT binary)") as write_copy:
                write_copy.write(COPY_SIGNATURE)
                with reader.cursor().copy(read_sql) as read_copy:
                    rows = _stream_reference(read_copy, write_copy, chunk_bytes)
                write_copy.write(COPY_TRAILER)
            cur.execute("ANALYZE bench_reference_stage")
            read_compute_copy = time.perf_counter() - started
            cur.execute(REF_CHECK_SQL)  # untimed: the reference computes what we store
            check = list(cur.fetchone())
            started = time.perf_counter()
            cur.execute(REF_UPDATE_SQL)
            updated = cur.rowcount
            update = time.perf_counter() - started
        transaction.set_rollback(True)  # our feature values stay: the reference only measures
    reader.close()
    mismatches = dict(zip(REF_COLUMNS, check[1:], strict=True))
    return {
        "seconds": read_compute_copy + update,
        "status": "succeeded" if rows == updated == check[0] else "failed",
        "rows": rows,
        "rows_updated": updated,
        "read_compute_copy_seconds": read_compute_copy,
        "update_seconds": update,
        "rows_compared": check[0],
        "mismatches": mismatches,
    }


def child_step(step: str, repeat: int) -> dict:
    """Run one step here (a child process) and return its figures."""
    runs = {
        "bigfile": step_bigfile,
        "import": step_import,
        "sync": lambda: _pipeline(["sync"]),
        "correct": lambda: _pipeline(["correct"]),
        "features": lambda: _pipeline(["features"]),
        "validate": lambda: _pipeline(["validate"]),
        "noop": lambda: _pipeline(["features"]),
        "newbar": step_newbar,
        "status": lambda: step_status(repeat),
        "reference": lambda: step_reference(NEW_BAR_FROM),
    }
    result = runs[step]()
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM, the high-water mark of its own address space. Not
    ru_maxrss: Linux carries that over fork and exec, so a child would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def use_database(name: str) -> None:
    settings.DATABASES["default"]["NAME"] = name
    connection.close()
    connection.settings_dict["NAME"] = name


# ---------------------------------------------------------------- the parent: databases, children, memory


class BackendMemory:
    """Peak memory of the bench database's PostgreSQL backends, from /proc/<pid>/status (kB
    fields): the largest sum of RssAnon seen and the largest VmHWM. Only when the server runs on
    this host (a pid is trusted when its command line is a postgres process)."""

    def __init__(self) -> None:
        self.private_kb = 0
        self.hwm_kb = 0
        self.read = 0
        with connection.cursor() as cur:
            cur.execute("SELECT coalesce(host(inet_server_addr()), 'local') IN ('local', '127.0.0.1', '::1')")
            self.local = bool(cur.fetchone()[0])

    def sample(self) -> None:
        if not self.local:
            return
        with connection.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            pids = [row[0] for row in cur.fetchall()]
        total = 0
        for pid in pids:
            fields = _proc_status(pid)
            if fields:
                self.read += 1
                total += fields.get("RssAnon", 0)
                self.hwm_kb = max(self.hwm_kb, fields.get("VmHWM", 0))
        self.private_kb = max(self.private_kb, total)

    def figures(self) -> dict:
        if not self.read:
            return {"pg_private_mb": None, "pg_hwm_mb": None}
        return {"pg_private_mb": self.private_kb / 1024, "pg_hwm_mb": self.hwm_kb / 1024}


def _proc_status(pid: int) -> dict[str, int] | None:
    try:
        if not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"postgres"):
            return None
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    fields = {}
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("RssAnon", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def run_child(step: str, database: str, data_dir: Path, repeat: int) -> dict:
    """Run `step` in a child process on `database`, sampling the backends' memory meanwhile."""
    out, log = data_dir / f"{step}.json", data_dir / f"{step}.log"
    out.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--child", step, "--database", database, "--repeat", str(repeat)]
    command += ["--out", str(out)]
    memory = BackendMemory()
    load = os.getloadavg()[0]
    with open(log, "w") as sink:
        child = subprocess.Popen(command, env={**os.environ, "DATA_ROOT": str(data_dir)}, stdout=sink, stderr=sink)
        while child.poll() is None:
            memory.sample()
            time.sleep(0.2)
    if child.returncode or not out.exists():
        tail = log.read_text()[-2000:]
        return {"seconds": None, "status": "crashed", "error": f"exit {child.returncode}: {tail}"}
    result = json.loads(out.read_text())
    result.update(memory.figures(), load_before=load, load_after=os.getloadavg()[0])
    return result


def _admin_cursor():
    """An autocommit session on the server's `postgres` database (CREATE/DROP DATABASE)."""
    params = connection.get_connection_params()
    keys = ("user", "password", "host", "port")
    return psycopg.connect(**{k: v for k, v in params.items() if k in keys}, dbname="postgres", autocommit=True)


def before_newbar(name: str, *, reuse: bool, keep: bool) -> None:
    """Make the new-bar step re-runnable on kept data: the database as it is before its first
    new-bar run is saved as <name>_before_newbar (a template copy); a --reuse run starts the step
    from that copy, so it imports the hourly files again instead of skipping them as done."""
    snapshot = f"{name}_before_newbar"
    connection.close()  # CREATE DATABASE ... TEMPLATE needs the source without sessions
    with _admin_cursor() as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [snapshot]).fetchone()
        if exists and reuse:
            print(f"  restoring {name} from {snapshot} (the data before the first new-bar run)", flush=True)
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(*map(sql.Identifier, (name, snapshot))))
        elif not exists and keep:
            print(f"  saving {name} as {snapshot}: a --reuse run of newbar starts from it", flush=True)
            admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(*map(sql.Identifier, (snapshot, name))))


class BenchDatabase:
    """A database of the bench's own (<name>, created and migrated by Django's test-database
    machinery); dropped on exit unless kept."""

    def __init__(self, name: str, *, fresh: bool, keep: bool) -> None:
        self.name, self.fresh, self.keep = name, fresh, keep

    def __enter__(self) -> BenchDatabase:
        db = settings.DATABASES["default"]
        db["TEST"] = {**db.get("TEST", {}), "NAME": self.name}
        if not self.fresh and not self.exists():
            raise SystemExit(f"--reuse: database {self.name} does not exist (run once with --keep)")
        self.old = connection.creation.create_test_db(
            verbosity=0, autoclobber=True, serialize=False, keepdb=not self.fresh
        )
        if self.fresh:
            pipeline_run(steps=["bootstrap"], trigger="command", requested_by="bench-scale")
        return self

    def exists(self) -> bool:
        with connection.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [self.name])
            return cur.fetchone() is not None

    def __exit__(self, *exc) -> None:
        connection.close()
        connection.creation.destroy_test_db(self.old, verbosity=0, keepdb=self.keep)


# Every leaf of the partition tree, or the table itself when it is not partitioned
# (pg_partition_tree returns no row for a plain table).
STORAGE_SQL = """
WITH tree AS (SELECT relid, isleaf FROM pg_partition_tree(%(table)s::regclass)),
leaves AS (
    SELECT relid FROM tree WHERE isleaf
    UNION ALL SELECT %(table)s::regclass WHERE NOT EXISTS (SELECT 1 FROM tree)
)
SELECT count(*), sum(pg_total_relation_size(l.relid))::bigint, sum(pg_table_size(l.relid))::bigint,
       sum(pg_indexes_size(l.relid))::bigint,
       sum(coalesce(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0))::bigint,
       sum(coalesce(s.n_dead_tup, 0))::bigint, sum(coalesce(s.n_live_tup, 0))::bigint
FROM leaves l
JOIN pg_class c ON c.oid = l.relid
LEFT JOIN pg_stat_user_tables s ON s.relid = l.relid
"""


def storage(tables: tuple[str, ...] = tuple(TARGET_BYTES)) -> dict:
    """Bytes per candle of each candle table, every partition counted (heap + indexes + toast)."""
    figures = {}
    with connection.cursor() as cur:
        for table in tables:
            cur.execute(STORAGE_SQL, {"table": table})
            partitions, total, heap_toast, indexes, toast, dead, live = cur.fetchone()
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            rows = cur.fetchone()[0]
            figures[table] = {
                "rows": rows,
                "partitions": partitions,
                "bytes": total,
                "heap_bytes": heap_toast - toast,
                "index_bytes": indexes,
                "toast_bytes": toast,
                "dead_tuples": dead,
                "live_tuples": live,
                "bytes_per_candle": total / rows if rows else None,
            }
    return figures


# ---------------------------------------------------------------- figures and report


def step_candles(results: dict, step: str) -> int | None:
    """The candles a step covers: N x B for the pipeline's steps, N for the new bar."""
    n, bars = results["meta"]["n"], results["meta"]["bars"]
    result = results["steps"].get(step) or {}
    if step == "bigfile":
        return (results.get("generate") or {}).get("big_rows")
    if step == "newbar":
        return n
    if step == "reference":
        return result.get("rows")
    return n * bars if step in (*PIPELINE, "noop") else None


def _mb(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f} MB"


def step_line(results: dict, step: str) -> list[str]:
    r = results["steps"][step]
    seconds, candles = r.get("seconds"), step_candles(results, step)
    rate = f"{candles / seconds:,.0f}" if seconds and candles else ""
    pg = _mb(r.get("pg_private_mb")) + (f" ({_mb(r.get('pg_hwm_mb'))})" if r.get("pg_hwm_mb") is not None else "")
    mark = "" if step in results.get("remeasured", []) else " (earlier run)"
    return [
        step + mark,
        "" if seconds is None else f"{seconds:,.1f} s",
        "" if candles is None else f"{candles:,}",
        rate,
        _mb(r.get("peak_rss_mb")),
        pg,
        f"{r['load_before']:.1f} → {r['load_after']:.1f}" if r.get("load_before") is not None else "",
        r.get("status", ""),
    ]


STEP_HEADER = ["step", "time", "candles", "rows/s", "peak RSS", "PG backends: private (VmHWM)", "load", "status"]


def _seconds(results: dict, step: str) -> float | None:
    return (results["steps"].get(step) or {}).get("seconds")


def _rate(results: dict, step: str) -> float | None:
    seconds, candles = _seconds(results, step), step_candles(results, step)
    return candles / seconds if seconds and candles else None


def _judge(value: float | None, limit: float, *, below: bool = True) -> bool | None:
    if value is None:
        return None
    return value <= limit if below else value >= limit


def target_rows(results: dict) -> list[tuple[str, str, str, bool | None]]:
    """(figure, measured, the issue's target, met) for every target the run can judge."""
    n, bars = results["meta"]["n"], results["meta"]["bars"]
    rows = [_import_target(results), _pipeline_target(results, n * bars), _ratio_target(results)]
    noop = _seconds(results, "noop")
    limit = TARGET_NOOP_SECONDS_100K * n / 100_000
    rows.append(
        (
            "features, nothing new",
            "" if noop is None else f"{noop:,.1f} s ({noop / n * 1000:,.2f} ms per series)",
            f"< 10 s at 100,000 series (0.1 ms per series: {limit:,.2f} s here)",
            _judge(noop, limit),
        )
    )
    newbar = _seconds(results, "newbar")
    limit = TARGET_NEWBAR_SECONDS_100K * n / 100_000
    rows.append(
        (
            "one new bar per symbol (import, sync, correct, features)",
            "" if newbar is None else f"{newbar:,.1f} s ({newbar / n * 1000:,.2f} ms per symbol)",
            f"< 60 s at 100,000 symbols (0.6 ms per symbol: {limit:,.2f} s here)",
            _judge(newbar, limit),
        )
    )
    pages = (results["steps"].get("status") or {}).get("pages") or {}
    for page in pages.values():
        rows.append(
            (
                f"{page['url']} (median of {len(page['runs_ms'])})",
                f"{page['median_ms']:,.0f} ms (first call {page['first_ms']:,.0f} ms)",
                f"< {TARGET_PAGE_MS:.0f} ms at 25 M candles",
                _judge(page["median_ms"], TARGET_PAGE_MS),
            )
        )
    for table, figures in (results.get("storage") or {}).items():
        per = figures["bytes_per_candle"]
        rows.append(
            (
                f"{table} bytes per candle",
                "" if per is None else f"{per:,.0f} B ({figures['bytes'] / 1e6:,.0f} MB, {figures['rows']:,} rows)",
                f"<= {TARGET_BYTES[table]} B, indexes included",
                _judge(per, TARGET_BYTES[table]),
            )
        )
    rows.append(_memory_target(results))
    return rows


def _import_target(results: dict) -> tuple[str, str, str, bool | None]:
    rate, big = _rate(results, "import"), _rate(results, "bigfile")
    share = rate / big if rate and big else None
    measured = "" if rate is None else f"{rate:,.0f} rows/s"
    if share is not None:
        measured += f" = {share:.0%} of one big file's {big:,.0f} rows/s"
    return (
        "import, one file per symbol",
        measured,
        ">= 50 % of the one-big-file rate",
        _judge(share, 0.5, below=False),
    )


def _pipeline_target(results: dict, candles: int) -> tuple[str, str, str, bool | None]:
    parts = [_seconds(results, step) for step in PIPELINE]
    total = sum(parts) if all(p is not None for p in parts) else None
    limit = TARGET_PIPELINE_SECONDS_25M * candles / 25_000_000
    return (
        "whole pipeline (import, sync, correct, features, validate)",
        "" if total is None else f"{total:,.1f} s ({candles / total:,.0f} candles/s)",
        f"< 30 min at 25 M candles ({25_000_000 / TARGET_PIPELINE_SECONDS_25M:,.0f} candles/s: {limit:,.1f} s here)",
        _judge(total, limit),
    )


def _ratio_target(results: dict) -> tuple[str, str, str, bool | None]:
    ours, ref = _seconds(results, "features"), _seconds(results, "reference")
    ratio = ours / ref if ours and ref else None
    measured = "" if ratio is None else f"{ratio:.2f} ({ours:,.1f} s / plain script {ref:,.1f} s)"
    return ("features from scratch / plain script", measured, "<= 1.0", _judge(ratio, 1.0))


def _memory_target(results: dict) -> tuple[str, str, str, bool | None]:
    peaks = {s: r.get("peak_rss_mb") for s, r in results["steps"].items() if r.get("peak_rss_mb") and s != "reference"}
    if not peaks:
        return ("peak memory", "", "< 1 GB in every step", None)
    worst = max(peaks, key=peaks.get)
    return (
        "peak memory (largest step)",
        f"{peaks[worst]:,.0f} MB ({worst})",
        "< 1 GB in every step",
        _judge(peaks[worst], TARGET_PEAK_MB),
    )


def _counts(results: dict, step: str, sub: str) -> dict:
    return (((results["steps"].get(step) or {}).get("steps") or {}).get(sub) or {}).get("counts") or {}


def sanity(results: dict) -> list[str]:
    """What the run did not do in full: a figure is only worth its work."""
    n, bars = results["meta"]["n"], results["meta"]["bars"]
    expected = {
        ("import", "import", "rows_inserted"): n * bars,
        ("features", "features", "rows_computed"): n * bars,
        ("newbar", "import", "rows_inserted"): n,
        ("newbar", "features", "rows_computed"): n,
    }
    notes = []
    for (step, sub, key), want in expected.items():
        if step in results.get("remeasured", []) and _counts(results, step, sub).get(key) != want:
            notes.append(f"{step}: {sub} {key} = {_counts(results, step, sub).get(key)}, expected {want:,}")
    notes += [f"{s}: {r['status']}" for s, r in results["steps"].items() if r.get("status") != "succeeded"]
    return notes


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def report(results: dict) -> str:
    meta = results["meta"]
    steps = [s for s in STEPS if s in results["steps"]]
    verdict = {True: "yes", False: "no", None: "–"}
    text = [
        f"bench-scale N={meta['n']:,} B={meta['bars']} ({meta['n'] * meta['bars']:,} candles), "
        f"commit {meta['commit']}, {meta['started_at']}",
        "",
        markdown(STEP_HEADER, [step_line(results, s) for s in steps]),
        "",
        markdown(
            ["figure", "measured", "target (issue 14)", "met"], [[*r[:3], verdict[r[3]]] for r in target_rows(results)]
        ),
    ]
    text += [f"\nnote: {note}" for note in sanity(results)]
    reference = results["steps"].get("reference")
    if reference and reference.get("mismatches") is not None:
        off = {k: v for k, v in reference["mismatches"].items() if v}
        text.append(
            f"\nplain script: {reference['rows_compared']:,} rows compared with our stored features, "
            + (f"differing rows per column: {off}" if off else "every value equal (relative 1e-6)")
        )
    return "\n".join(text)


def storage_table(results: dict) -> str:
    rows = []
    for table, f in (results.get("storage") or {}).items():
        rows.append(
            [
                table,
                f"{f['rows']:,}",
                str(f["partitions"]),
                f"{f['heap_bytes'] / 1e6:,.0f} MB",
                f"{f['index_bytes'] / 1e6:,.0f} MB",
                f"{f['toast_bytes'] / 1e6:,.1f} MB",
                f"{f['dead_tuples']:,}",
                "" if f["bytes_per_candle"] is None else f"{f['bytes_per_candle']:,.0f} B",
            ]
        )
    header = ["table", "rows", "partitions", "heap", "indexes", "toast", "dead tuples", "bytes per candle"]
    return markdown(header, rows) if rows else ""


def ensure_files(data_dir: Path, n: int, bars: int) -> dict:
    """The generated files: reused when a previous run left the same ones, written otherwise."""
    manifest = data_dir / "manifest.json"
    if manifest.exists():
        known = json.loads(manifest.read_text())
        if (known["n"], known["bars"], known["new_bar_from"]) == (n, bars, NEW_BAR_FROM.isoformat()):
            return known
    print(f"generating {n:,} symbols x {bars} bars (+ the hourly bar, + the one-big-file reference) ...", flush=True)
    made = generate(data_dir, n, bars)
    print(f"  {made['files']:,} files, {made['bytes'] / 1e6:,.0f} MB in {made['seconds']:.1f} s", flush=True)
    return made


def _commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _other_activity() -> dict:
    """What else the machine does now: load average and active sessions of other databases."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND backend_type = 'client backend'"
            " AND datname IS DISTINCT FROM current_database()"
        )
        active = cur.fetchone()[0]
    return {"load": os.getloadavg(), "other_active_pg_sessions": active}


def record(results: dict, step: str, result: dict, data_dir: Path) -> None:
    results["steps"][step] = result
    results["remeasured"].append(step)
    (data_dir / "results.json").write_text(json.dumps(results, default=str))
    line = step_line(results, step)
    print(f"  [{step}] " + ", ".join(x for x in line[1:] if x), flush=True)
    if result.get("error"):
        print(f"    error: {str(result['error'])[-600:]}", flush=True)
    for name, sub in (result.get("steps") or {}).items():
        counts = {k: v for k, v in (sub.get("counts") or {}).items() if isinstance(v, int | float) and v}
        seconds = f"{sub['seconds']:.1f} s" if sub.get("seconds") is not None else ""
        print(f"    {name}: {sub['status']} {seconds} {json.dumps(counts)[:300]}", flush=True)


def run(args: argparse.Namespace) -> dict:
    data_dir = BENCH_DIR / "scale" / f"N{args.n}-B{args.bars}"
    state = data_dir / "results.json"
    results = json.loads(state.read_text()) if args.reuse and state.exists() else {"steps": {}}
    results["meta"] = {"n": args.n, "bars": args.bars, "commit": _commit(), "steps": args.steps}
    results["meta"]["started_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["remeasured"] = []
    results["generate"] = ensure_files(data_dir, args.n, args.bars)
    base = settings.DATABASES["default"]["NAME"]
    if "bigfile" in args.steps:
        print(f"one big file of {results['generate']['big_rows']:,} rows, in {base}_bench_scale_big ...", flush=True)
        with BenchDatabase(f"{base}_bench_scale_big", fresh=True, keep=False) as db:
            record(results, "bigfile", run_child("bigfile", db.name, data_dir, args.repeat), data_dir)
    with BenchDatabase(f"{base}_bench_scale", fresh=not args.reuse, keep=args.keep) as db:
        results["meta"]["database"] = db.name
        results["meta"]["activity_before"] = _other_activity()
        for step in (s for s in args.steps if s != "bigfile"):
            print(f"{step} ...", flush=True)
            if step == "storage":
                results["storage"] = storage()
                results["remeasured"].append(step)
                (data_dir / "results.json").write_text(json.dumps(results, default=str))
                continue
            if step == "newbar" and (args.keep or args.reuse):
                before_newbar(db.name, reuse=args.reuse, keep=args.keep)
            record(results, step, run_child(step, db.name, data_dir, args.repeat), data_dir)
        results["meta"]["activity_after"] = _other_activity()
    return results


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=5000, help="symbols (default 5000)")
    parser.add_argument("bars", type=int, nargs="?", default=250, help="daily bars per symbol (default 250)")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of: {', '.join(STEPS)}")
    parser.add_argument("--keep", action="store_true", help="leave the database and the files for --reuse")
    parser.add_argument("--reuse", action="store_true", help="start from what a --keep run left")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per page (default 5)")
    parser.add_argument("--child", choices=sorted(CHILD_STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in args.steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown step(s) {unknown}; steps: {', '.join(STEPS)}")
    if args.n < 1 or args.bars < 60:
        parser.error("N must be at least 1 and B at least 60 (the longest feature window is 51 bars)")
    args.steps = [s for s in STEPS if s in args.steps]
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        use_database(args.database)
        Path(args.out).write_text(json.dumps(child_step(args.child, args.repeat), default=str))
        return
    results = run(args)
    text = report(results)
    print("\n" + text + "\n\n" + storage_table(results))
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = BENCH_DIR / f"scale-N{args.n}-B{args.bars}-{stamp}.json"
    results["targets"] = [
        dict(zip(("figure", "measured", "target", "met"), r, strict=True)) for r in target_rows(results)
    ]
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nraw figures: {out.relative_to(ROOT)}")
    if not args.keep:
        shutil.rmtree(BENCH_DIR / "scale" / f"N{args.n}-B{args.bars}", ignore_errors=True)
        with _admin_cursor() as admin:
            snapshot = f"{results['meta']['database']}_before_newbar"
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(snapshot)))


if __name__ == "__main__":
    main()
