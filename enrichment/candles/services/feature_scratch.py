"""The chunked feature step's path for series with no market_data_v2 rows yet (from scratch).

Such a series needs no staging, no comparison with stored bars, no amendment and no UPDATE:
for all of a chunk's new series at once, one query reads their candles from market_data
(the newest row of each bar, as `feature_batch._copy_candles` picks it), the kernels run per
series over that one array at once (`feature_compute.compute_many`, the very code of the other
paths), one binary COPY writes every candle with its features straight into market_data_v2
(the payload built with numpy, `candle_upsert.binary_rows`), and their daily quality metrics are
computed from the flags and scores in hand and written with one more COPY (an upsert where the
series already has metric rows). The rows are those the staged path writes, bit for bit (the
tests of test_features_chunked.py compare both with the per-series path).
"""

from __future__ import annotations

import threading
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
from django.db import connection

from enrichment.candles import candle_quality
from enrichment.candles.feature_list import INPUT_COLUMNS, RECURSIVE
from enrichment.candles.local_source import MARKET_DATA_SOURCE
from enrichment.candles.models import CANDLE_COLUMNS
from enrichment.candles.services.candle_upsert import COPY_HEADER, COPY_TRAILER, binary_rows, copy_into
from enrichment.candles.services.feature_compute import (
    FEATURE_COLUMNS,
    METRIC_COLUMNS,
    ManyRows,
    SeriesKey,
    compute_many,
)
from etl.services.partitions import partitions_ensure

_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in microseconds since 1970
_PG_EPOCH_DAYS = 10_957
_US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_COPY_BLOCK = 8 << 20
# Held around a chunk's Python-only work (the kernels and the candles' payload, the metrics and
# theirs). With two chunks in flight (`feature_workers`) they then take turns rather than share the
# GIL in 5 ms slices, so the first to finish starts its COPY while the other computes. Nothing is
# awaited from the other chunk's transaction while it is held (the partition lock, held until
# commit, is taken outside it), so the two cannot deadlock. Measured on `bench_scale.py 5000 250`'s
# database, the feature step alone, alternately, load 2.4-2.8: 14.5 s and 11.9 s without it, 13.7 s
# and 10.9 s with it; held over the read as well, it serialised the reads too (15.7 s).
PYTHON_WORK = threading.Lock()


def _number(expr: str) -> str:
    """A text field of market_data.extra as float8, NULL when it is not a number (as the
    per-series path's `pd.to_numeric(errors="coerce")`)."""
    number = "'^\\s*[-+]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?\\s*$'"
    return f"CASE WHEN {expr} ~ {number} THEN ({expr})::float8 END"


# What `MarketDataSource.fetch` reads, for every series of a chunk at once; the other candle
# columns are NULL from market_data.
SOURCE_COLUMNS = {
    "open": "md.open::float8",
    "high": "md.high::float8",
    "low": "md.low::float8",
    "close": "md.close::float8",
    "volume": "md.volume::float8",
    "taker_buy_volume": _number("COALESCE(md.extra->>'taker_buy_volume', md.extra->>'taker_buy_base_volume')"),
    "quote_volume": _number("md.extra->>'quote_volume'"),
    "trades": _number("COALESCE(md.extra->>'trades', md.extra->>'count')"),
}


@dataclass(frozen=True, slots=True)
class Tail:
    """What the chunk computed for one series."""

    rows_read: int
    rows_written: int
    first_us: int | None
    last_us: int | None
    incremental: bool


def copy_in(cur, table: str, columns: list[str], payload: bytes) -> None:
    """COPY a binary payload (`binary_rows`) into `table` (our own name and columns). Errors are
    Django's, as from `cur.execute` (a lost connection is an OperationalError either way)."""
    copy_sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    with connection.wrap_database_errors, cur.copy(copy_sql) as copy:
        copy.write(COPY_HEADER)
        view = memoryview(payload)
        for offset in range(0, len(view), _COPY_BLOCK):
            copy.write(view[offset : offset + _COPY_BLOCK])
        copy.write(COPY_TRAILER)


# What an upsert of metric days changes in each series' completeness sums (enrichment_status's
# complete_bars and expected_bars): the new days' sums less the sums of the stored days they
# replace, read by their keys before the upsert (an index probe per day written, whatever the
# series' history).
_COMPLETENESS_DELTA = """
CREATE TEMP TABLE feature_completeness ON COMMIT DROP AS
SELECT s.k::int8 AS k,
       sum(LEAST(s.actual_bars, s.expected_bars))::int8 - coalesce(sum(LEAST(q.actual_bars, q.expected_bars)), 0)
           AS complete,
       sum(s.expected_bars)::int8 - coalesce(sum(q.expected_bars), 0) AS expected
FROM feature_metrics s
JOIN feature_chunk c ON c.k = s.k::int8
LEFT JOIN data_quality_metrics q
       ON q.symbol_id = c.symbol_id AND q.timeframe = c.timeframe AND q.day = (s.ts AT TIME ZONE 'UTC')::date
GROUP BY s.k
"""


def metrics_upsert(cur, metrics: dict[str, np.ndarray], *, delta: bool = False) -> None:
    """Daily quality metrics (`daily_metrics_many`'s arrays, `k` the series of feature_chunk as
    float8) into data_quality_metrics: one binary COPY into a temporary table, one upsert.
    `delta`: first record in feature_completeness what the upsert changes in each series'
    completeness sums (`_COMPLETENESS_DELTA`)."""
    cols = list(METRIC_COLUMNS)
    # A chunk may upsert twice: its new series that kept metric days, then its other series.
    cur.execute("DROP TABLE IF EXISTS feature_metrics")
    cur.execute(
        "CREATE TEMP TABLE feature_metrics (ts timestamptz NOT NULL, k float8 NOT NULL, "
        + ", ".join(f"{c} float8" for c in cols[1:])
        + ") ON COMMIT DROP"
    )
    copy_into(
        cur,
        table="feature_metrics",
        columns=["k", *cols[1:]],
        ts=metrics["day"].astype("datetime64[D]").astype("datetime64[us]"),
        arrays=[metrics["k"]] + [metrics[c].astype(np.float64) for c in cols[1:]],
    )
    if delta:
        cur.execute(_COMPLETENESS_DELTA)
    casts = ", ".join(f"s.{c}::{t.removesuffix('[]')}" for c, t in list(METRIC_COLUMNS.items())[1:])
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols[1:])
    cur.execute(
        f"""
        INSERT INTO data_quality_metrics (symbol_id, timeframe, {", ".join(cols)}, computed_at)
        SELECT c.symbol_id, c.timeframe, (s.ts AT TIME ZONE 'UTC')::date, {casts}, now()
        FROM feature_metrics s JOIN feature_chunk c ON c.k = s.k::int8
        ORDER BY c.symbol_id, c.timeframe, s.ts
        ON CONFLICT (symbol_id, timeframe, day) DO UPDATE SET {updates}, computed_at = now()
        """  # noqa: S608 - column names are constants
    )


def scratch_series(cur) -> list[int]:
    """The chunk's series without a market_data_v2 row (feature_chunk.scratch), by k. Only a
    series copied from its first candle (`since` NULL: no watermark yet, or a full run) is looked
    for: one that has a watermark was copied before, and should it have no row now, the staged
    path computes it as well (the same rows, only slower for a long series). The hourly run then
    probes no series here (was 500 index probes a chunk, 0.07 s at 5,000 symbols)."""
    cur.execute(
        "UPDATE feature_chunk c SET scratch = true WHERE c.since IS NULL AND NOT EXISTS (SELECT 1 FROM"
        " market_data_v2 v WHERE v.symbol_id = c.symbol_id AND v.timeframe = c.timeframe) RETURNING k"
    )
    return sorted(k for (k,) in cur.fetchall())


# The candles of the chunk's new series: one per bar (the newest row wins), NULL as NaN with
# a bit per column saying which were NULL (the written rows keep NULL and NaN apart).
_READ_SQL = """
SELECT k, ts, {values}, {nulls} AS nulls FROM (
    SELECT DISTINCT ON (c.k, md.ts) c.k, md.ts, {select}
    FROM feature_chunk c
    JOIN market_data md ON md.symbol_id = c.symbol_id AND md.timeframe = c.timeframe
    WHERE c.scratch AND (c.since IS NULL OR md.updated_at > c.since)
    ORDER BY c.k, md.ts, md.id DESC
) x
"""


def _read(cur) -> dict[str, np.ndarray]:
    columns = list(SOURCE_COLUMNS)
    sql = _READ_SQL.format(
        values=", ".join(f"COALESCE({c}, 'NaN') AS {c}" for c in columns),
        nulls="("
        + " + ".join(f"CASE WHEN {c} IS NULL THEN {1 << j} ELSE 0 END" for j, c in enumerate(columns))
        + ")::int8",
        select=", ".join(f"{expr} AS {c}" for c, expr in SOURCE_COLUMNS.items()),
    )
    return packed_out(cur, sql, {"k": "i", "ts": "t", **dict.fromkeys(columns, "f"), "nulls": "i"})


_SEND = {"i": "int8send", "t": "timestamptz_send", "f": "float8send"}


def fetch_binary(cur, sql: str) -> list[tuple]:
    """Every row of `sql` (no parameters), fetched in binary format: bytea comes as its bytes, not
    as hex text to be decoded (a fifth of `packed_out`'s statement for a chunk's context: 40 ms
    against 50 ms for 26,500 rows of 17 columns). Django's cursor (psycopg's ClientCursor) takes no
    binary results, so a plain psycopg cursor on the same connection runs it, through Django's
    execute wrappers and query log as `cur.execute` would, its errors Django's."""

    def run(sql, params, many, context):
        with cur.db.wrap_database_errors, psycopg.Cursor(cur.db.connection) as raw:
            raw.execute(sql, binary=True)
            return raw.fetchall()

    debug = getattr(cur, "debug_sql", None)  # the DEBUG cursor's query log
    with debug(sql) if debug else nullcontext():
        return cur._execute_with_wrappers(sql, None, False, run)  # noqa: SLF001 - Django's wrapper chain


def packed_out(cur, select: str, fields: dict[str, str]) -> dict[str, np.ndarray]:
    """Run `select` and return its columns as numpy arrays, sorted by the first two fields; `fields`
    names each one's kind: "i" int8, "f" float8, "t" timestamptz (as microseconds since 1970).
    The server packs each column of each group of rows of the same first field (a series) into one
    bytea of its values' binary send functions (the bytes a binary COPY writes), fetched in binary
    (`fetch_binary`): the client takes a few values, not one message per row as from COPY (1.45 s
    instead of 2.35 s for 500,000 candles). One aggregate per column and series is a little
    cheaper than one over each row's concatenated values (35-38 ms against 37-41 ms for a chunk's
    context of 26,500 rows of 17 columns, binary; the send functions are most of it). A column's
    bytea holds 8 bytes a row: PostgreSQL's 1 GB limit is 134 M rows of one series, far beyond what
    a chunk's memory takes. Every column must be non-NULL: a NULL would be left out of its
    aggregate, so each column's length is checked against the row count."""
    names = list(fields)
    first, second = names[:2]
    packed = ", ".join(f"string_agg({_SEND[kind]}(q.{name}), ''::bytea)" for name, kind in fields.items())
    parts = fetch_binary(cur, f"SELECT count(*), {packed} FROM ({select}) q GROUP BY q.{first}")  # noqa: S608
    total = sum(part[0] for part in parts)
    out = {}
    for j, (name, kind) in enumerate(fields.items(), start=1):
        values = np.frombuffer(
            b"".join(bytes(part[j]) for part in parts if part[j] is not None), dtype=">f8" if kind == "f" else ">i8"
        )
        if len(values) != total:
            raise ValueError("packed_out: a NULL column dropped rows")
        out[name] = values
    order = np.lexsort((out[second], out[first]))
    for name, kind in fields.items():
        values = out[name][order].astype(np.float64 if kind == "f" else np.int64)
        out[name] = values + _PG_EPOCH_US if kind == "t" else values
    return out


@dataclass(frozen=True, slots=True)
class ScratchStatus:
    """The status rows of the new series, from what the chunk wrote (no read back): per series k,
    its row count, first and last bar (microseconds since 1970), the mean quality score (NaN for
    none: NULL), and the completeness over its metric days (NaN for none: NULL)."""

    k: np.ndarray
    rows: np.ndarray
    first_us: np.ndarray
    last_us: np.ndarray
    quality: np.ndarray
    quality_sum: np.ndarray  # the non-NaN scores' sum (0 for none), kept with the status row
    quality_n: np.ndarray  # and their count
    completeness: np.ndarray
    complete: np.ndarray  # sum of LEAST(actual, expected) bars over its metric days
    expected: np.ndarray  # sum of expected bars


@dataclass(slots=True)
class ScratchResult:
    inserted: int
    tails: dict[int, Tail]
    # None where a series of the chunk already had metric days (the upsert): then recounted.
    status: ScratchStatus | None = None


def scratch_run(cur, keys: list[SeriesKey], new: list[int]) -> ScratchResult:
    """Read, compute and write the new series `new` (k) of a chunk: their candles with
    features into market_data_v2 and their daily quality metrics."""
    read = _read(cur)
    if not len(read["k"]):
        return ScratchResult(0, {})
    with PYTHON_WORK:
        ks, ts_us = read["k"], read["ts"]
        present = np.unique(ks)
        bounds = np.searchsorted(ks, np.append(present, present[-1] + 1))
        nan = np.full(len(ks), np.nan)
        lengths = np.diff(bounds)
        zeros = np.zeros(len(present), dtype=np.int64)
        rows = ManyRows(
            ts_seconds=ts_us // _US,
            data={c: read.get(c, nan) for c in (*INPUT_COLUMNS, *RECURSIVE)},
            bounds=bounds,
            emit_from=zeros,
            row_offset=zeros,
            prev_seconds=np.full(len(present), candle_quality.NO_PREV),
        )
        out = compute_many([keys[k] for k in present.tolist()], rows)
        firsts, lasts = ts_us[bounds[:-1]].tolist(), ts_us[bounds[1:] - 1].tolist()
        tails = {
            k: Tail(n, n, first, last, incremental=False)
            for k, n, first, last in zip(present.tolist(), lengths.tolist(), firsts, lasts, strict=True)
        }
        cur.execute("SELECT now()")
        # Microseconds since 1970, exactly (pandas' `Timestamp.value` is nanoseconds whatever its unit).
        now_us = (cur.fetchone()[0] - _EPOCH) // timedelta(microseconds=1)
        columns, payload = _candles_payload(keys, read, out, now_us)
    # Not under PYTHON_WORK: a missing partition takes a lock held until commit (see PYTHON_WORK).
    partitions_ensure(
        table="market_data_v2",
        first=pd.Timestamp(int(read["ts"].min()), unit="us", tz="UTC").to_pydatetime(),
        last=pd.Timestamp(int(read["ts"].max()), unit="us", tz="UTC").to_pydatetime(),
    )
    copy_in(cur, "market_data_v2", columns, payload)
    sums = _write_metrics(cur, keys, read, bounds, present, out, now_us)
    with PYTHON_WORK:
        status = None if sums is None else _status(present, bounds, ts_us, out["quality_score"], *sums)
    return ScratchResult(len(ks), tails, status)


def _status(present, bounds, ts_us, score, complete, expected) -> ScratchStatus:
    """What `feature_batch._refresh_status`'s recount would read back from the rows just written:
    each series' count, first and last bar, mean quality score (the non-NULL scores summed one by
    one in time order, as the recount's `avg` sums them), and completeness (the sums of its metric
    days' LEAST(actual, expected) and expected: exact integers, divided as float8)."""
    n = len(present)
    quality = np.full(n, np.nan)
    quality_sum = np.zeros(n)
    quality_n = np.zeros(n, dtype=np.int64)
    for i in range(n):
        values = score[bounds[i] : bounds[i + 1]]
        valid = ~np.isnan(values)
        count = int(valid.sum())
        if count:
            quality_sum[i] = np.cumsum(values[valid])[-1]
            quality_n[i] = count
            quality[i] = quality_sum[i] / count
    with np.errstate(invalid="ignore", divide="ignore"):
        completeness = np.where(expected > 0, complete.astype(np.float64) / expected.astype(np.float64), np.nan)
    return ScratchStatus(
        k=present.astype(np.int64),
        rows=np.diff(bounds).astype(np.int64),
        first_us=ts_us[bounds[:-1]],
        last_us=ts_us[bounds[1:] - 1],
        quality=quality,
        quality_sum=quality_sum,
        quality_n=quality_n,
        completeness=completeness,
        complete=complete,
        expected=expected,
    )


def _candles_payload(keys: list[SeriesKey], read: dict, out: dict, now_us: int) -> tuple[list[str], bytes]:
    """Every candle with its features, as the rows of one binary COPY into market_data_v2: the
    row the staged path's INSERT writes (revision 1, features of revision 1, computed and updated
    now). Returns the columns and the payload."""
    ks, n = read["k"], len(read["k"])
    symbol = np.array([key.symbol.pk for key in keys], dtype=np.int64)[ks]
    timeframe = np.array([key.timeframe.encode() for key in keys])[ks]
    nulls = read["nulls"]
    candles = []
    for j, c in enumerate(SOURCE_COLUMNS):
        null = (nulls >> j) & 1 == 1
        if c != "trades":
            candles.append((c, "float8", read[c], null))
            continue
        trades = np.where(null, 0.0, read[c])
        if not (np.isfinite(trades).all() and (np.abs(trades) < 2.0**63).all()):
            raise ValueError("trades out of bigint range")  # as the INSERT's ::bigint: the chunk fails
        candles.append((c, "int8", np.rint(trades).astype(np.int64), null))
    unset = [(c, "float8", np.zeros(n), np.ones(n, dtype=bool)) for c in CANDLE_COLUMNS if c not in SOURCE_COLUMNS]
    features = [(c, "float8", out[c], np.isnan(out[c])) for c in (*FEATURE_COLUMNS, "quality_score")]
    one, stamp = np.ones(n, dtype=np.int32), np.full(n, now_us - _PG_EPOCH_US, dtype=np.int64)
    fields = [
        ("symbol_id", "int4", symbol.astype(np.int32), None),
        ("timeframe", "text", timeframe, None),
        ("ts", "int8", read["ts"] - _PG_EPOCH_US, None),
        *candles,
        *unset,
        ("source", "text", np.full(n, MARKET_DATA_SOURCE.encode()), None),
        ("revision", "int4", one, None),
        *features,
        ("quality_flags", "int4", out["quality_flags"].astype(np.int32), None),
        ("features_revision", "int4", one, None),
        ("computed_at", "int8", stamp, None),
        ("updated_at", "int8", stamp, None),
    ]
    # A column NULL in every row of the chunk (a source's missing fields, the features they feed)
    # is left out of the COPY: it is NULL by default, and neither side handles it row by row.
    fields = [field for field in fields if field[3] is None or not field[3].all()]
    payload = binary_rows([(kind, values, null) for _, kind, values, null in fields])
    return [name for name, *_ in fields], payload


def _write_metrics(
    cur, keys, read: dict, bounds: np.ndarray, present: np.ndarray, out: dict, now_us: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """The daily quality metrics of the new series from their first bar's day on (no earlier
    row: `from_day_start` false), one pass per calendar and timeframe (`daily_metrics_many`);
    one COPY into data_quality_metrics, or an upsert where a series already has metric rows.
    Returns, per series of `present`, the sums of LEAST(actual, expected) and of expected bars
    over its metric days (all of them: no earlier row), or None after an upsert."""
    cur.execute(
        "SELECT EXISTS (SELECT 1 FROM feature_chunk c JOIN data_quality_metrics q"
        " ON q.symbol_id = c.symbol_id AND q.timeframe = c.timeframe WHERE c.scratch)"
    )
    upsert = cur.fetchone()[0]
    with PYTHON_WORK:
        groups: dict[tuple[int, int], list[int]] = {}
        for i, k in enumerate(present.tolist()):
            groups.setdefault((keys[k].symbol.market_id, keys[k].seconds), []).append(i)
        parts = []
        flags = out["quality_flags"].astype(np.int64)
        for members in groups.values():
            key = keys[int(present[members[0]])]
            rows = np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in members])
            lengths = np.array([bounds[i + 1] - bounds[i] for i in members])
            metrics = candle_quality.daily_metrics_many(
                ts_seconds=read["ts"][rows] // _US,
                flags=flags[rows],
                score=out["quality_score"][rows],
                bounds=np.concatenate([[0], np.cumsum(lengths)]),
                from_day_start=np.zeros(len(members), dtype=bool),
                calendar=key.calendar,
                timeframe_seconds=key.seconds,
            )
            metrics["k"] = present[members][metrics.pop("series")]
            parts.append(metrics)
        metrics = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}
        order = np.lexsort((metrics["day"], metrics["k"]))
        metrics = {c: v[order] for c, v in metrics.items()}
    if upsert:
        metrics_upsert(cur, {**metrics, "k": metrics["k"].astype(np.float64)})
        return None
    with PYTHON_WORK:
        where = np.searchsorted(present, metrics["k"])
        expected_bars = metrics["expected_bars"].astype(np.int64)
        complete = np.bincount(
            where, weights=np.minimum(metrics["actual_bars"].astype(np.int64), expected_bars), minlength=len(present)
        )
        expected = np.bincount(where, weights=expected_bars, minlength=len(present))
        n, cols = len(metrics["k"]), list(METRIC_COLUMNS)
        fields = [
            ("int8", np.array([key.symbol.pk for key in keys], dtype=np.int64)[metrics["k"]], None),
            ("text", np.array([key.timeframe.encode() for key in keys])[metrics["k"]], None),
            ("int4", (metrics["day"] - _PG_EPOCH_DAYS).astype(np.int32), None),
        ]
        for c, sql_type in list(METRIC_COLUMNS.items())[1:]:
            values = metrics[c]
            if sql_type == "float8[]":
                fields.append(("float8", values.astype(np.float64), np.isnan(values)))
            else:
                fields.append(("int4", values.astype(np.int32), None))
        fields.append(("int8", np.full(n, now_us - _PG_EPOCH_US, dtype=np.int64), None))
        payload = binary_rows(fields)
    copy_in(cur, "data_quality_metrics", ["symbol_id", "timeframe", *cols, "computed_at"], payload)
    # bincount sums in float64: exact below 2**53 bars
    return complete.astype(np.int64), expected.astype(np.int64)
