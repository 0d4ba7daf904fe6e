"""Writing candles into market_data_v2: binary COPY into a staging table, then one
INSERT ... ON CONFLICT that touches only new or changed bars.

An unchanged bar is not written at all (no new row version, no revision bump);
a changed one gets revision + 1, its features marked stale, and one amendment in
`data_corrections` with the old and new values of the fields that changed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from django.db import connection, transaction
from numba import njit

from enrichment.candles.candle_frames import normalise
from enrichment.candles.models import CANDLE_COLUMNS
from etl.locks import FEATURE_SERIES, xact_lock
from etl.models import Symbol
from etl.services.partitions import partitions_ensure

# Columns a source may lack: a bar restated without them keeps what an earlier source gave.
OHLCV = ("open", "high", "low", "close", "volume")
SUPPLEMENTARY = tuple(c for c in CANDLE_COLUMNS if c not in OHLCV)
AMENDMENT_KIND = "candle_amendment"
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in microseconds since 1970


@dataclass(frozen=True, slots=True)
class UpsertResult:
    received: int
    inserted: int
    updated: int
    unchanged: int
    amendments: int
    first_ts: datetime | None = None
    last_ts: datetime | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class StageWrite:
    inserted: int
    updated: int


def series_lock(*, symbol_id: int, timeframe: str) -> None:
    """Serialise writers of one series (candle upserts and feature runs) for this transaction."""
    xact_lock(FEATURE_SERIES, f"{symbol_id}:{timeframe}")


COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
COPY_TRAILER = b"\xff\xff"
_BINARY = {"int4": ">i4", "int8": ">i8", "float8": ">f8"}
_SLICE_ROWS = 1 << 16  # rows built at a time: a few tens of MB whatever the payload


def binary_copy_payload(ts: pd.Series | np.ndarray, columns: list[np.ndarray]) -> bytes:
    """PostgreSQL binary COPY rows (timestamptz, float8, float8, ...), NaN as NULL, built with numpy."""
    ts_us = _epoch_us(ts) - _PG_EPOCH_US
    fields = [("int8", ts_us, None)]
    for col in columns:
        arr = np.asarray(col, dtype=np.float64)
        fields.append(("float8", arr, np.isnan(arr)))
    return COPY_HEADER + binary_rows(fields) + COPY_TRAILER


def binary_rows(fields: list[tuple[str, np.ndarray, np.ndarray | None]]) -> bytes:
    """The rows of a binary COPY (no header, no trailer), built with numpy, no loop per row.
    Each field is (kind, values, null): kind "int4", "int8" (a timestamptz as microseconds since
    2000-01-01 too), "float8" or "text" (values a numpy bytes array, "S<n>"); null a bool array
    (True: NULL) or None. Every row is first laid out at full width, then the bytes a NULL or a
    shorter text does not use are dropped with one boolean mask."""
    n = len(fields[0][1])
    layout: list[tuple[str, str]] = [("count", ">i2")]
    for j, (kind, values, _) in enumerate(fields):
        layout += [(f"l{j}", ">i4"), (f"v{j}", f"S{values.dtype.itemsize}" if kind == "text" else _BINARY[kind])]
    dtype = np.dtype(layout)
    parts = []
    for a in range(0, n, _SLICE_ROWS):
        b = min(n, a + _SLICE_ROWS)
        parts.append(_binary_slice(dtype, [(k, v[a:b], None if z is None else z[a:b]) for k, v, z in fields]))
    return b"".join(parts)


def _binary_slice(dtype: np.dtype, fields: list[tuple[str, np.ndarray, np.ndarray | None]]) -> bytes:
    m = len(fields[0][1])
    rows = np.empty(m, dtype=dtype)
    rows["count"] = len(fields)
    variable = []
    for j, (kind, values, null) in enumerate(fields):
        width = dtype.fields[f"v{j}"][0].itemsize
        length = np.char.str_len(values).astype(np.int32) if kind == "text" else np.full(m, width, np.int32)
        if null is not None and null.any():
            length[null] = -1
        rows[f"l{j}"] = length
        rows[f"v{j}"] = values
        if kind == "text" or (null is not None and null.any()):
            variable.append((dtype.fields[f"v{j}"][1], width, length))
    if not variable:
        return rows.tobytes()
    raw = rows.view(np.uint8).reshape(m, dtype.itemsize)
    offsets = np.array([offset for offset, _, _ in variable], dtype=np.int64)
    widths = np.array([width for _, width, _ in variable], dtype=np.int64)
    lengths = np.stack([length for _, _, length in variable], axis=1)
    used = np.maximum(lengths, 0).sum(dtype=np.int64) + (dtype.itemsize - widths.sum()) * m
    out = np.empty(int(used), dtype=np.uint8)
    _compact(raw, offsets, widths, lengths, out)
    return out.tobytes()


@njit(cache=True)
def _compact(raw, offsets, widths, lengths, out):  # pragma: no cover - compiled
    """Each row of `raw` into `out`, of its variable fields (at `offsets`, `widths` wide) only
    the first `lengths[row, j]` bytes (none for NULL, -1): one pass, no mask as big as the rows."""
    pos = 0
    for i in range(raw.shape[0]):
        start = 0
        for j in range(offsets.shape[0]):
            for b in range(start, offsets[j]):
                out[pos] = raw[i, b]
                pos += 1
            for b in range(offsets[j], offsets[j] + max(lengths[i, j], 0)):
                out[pos] = raw[i, b]
                pos += 1
            start = offsets[j] + widths[j]
        for b in range(start, raw.shape[1]):
            out[pos] = raw[i, b]
            pos += 1


def _epoch_us(ts) -> np.ndarray:
    if isinstance(ts, pd.Series):
        ts = pd.DatetimeIndex(ts)
    if isinstance(ts, pd.DatetimeIndex):
        return ts.as_unit("us").asi8.astype(np.int64)
    return np.asarray(ts).astype("datetime64[us]").astype(np.int64)


def copy_into(cursor, *, table: str, columns: list[str], ts, arrays: list[np.ndarray], chunk: int = 8 << 20) -> None:
    """COPY (ts, *columns) FROM STDIN in binary; the table name and columns are ours, never user input."""
    payload = binary_copy_payload(ts, arrays)
    target = ", ".join(["ts", *columns])
    with cursor.copy(f"COPY {table} ({target}) FROM STDIN (FORMAT BINARY)") as copy:
        view = memoryview(payload)
        for offset in range(0, len(payload), chunk):
            copy.write(view[offset : offset + chunk])


def _stage(cursor, frame: pd.DataFrame) -> None:
    cols = ", ".join(f"{c} float8" for c in CANDLE_COLUMNS)
    cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS v2_stage (ts timestamptz NOT NULL, {cols}) ON COMMIT DROP")
    cursor.execute("TRUNCATE v2_stage")
    copy_into(
        cursor,
        table="v2_stage",
        columns=list(CANDLE_COLUMNS),
        ts=frame["ts"],
        arrays=[frame[c].to_numpy(dtype=np.float64) for c in CANDLE_COLUMNS],
    )


def _new_value(col: str, table: str = "market_data_v2", excluded: str = "s") -> str:
    value = f"{excluded}.{col}::bigint" if col == "trades" else f"{excluded}.{col}"
    return f"COALESCE({value}, {table}.{col})" if col in SUPPLEMENTARY else value


def candles_upsert(
    *, symbol: Symbol, timeframe: str, frame: pd.DataFrame, source: str, run_ref: str = "", actor: str = ""
) -> UpsertResult:
    """Upsert one series' candles (a DataFrame with `ts` and candle columns). Effects: new bars
    inserted; changed bars updated with revision + 1 and stale features, each with one
    amendment row; unchanged bars left alone. One transaction."""
    frame = normalise(frame)
    if frame.empty:
        return UpsertResult(received=0, inserted=0, updated=0, unchanged=0, amendments=0)
    with transaction.atomic(), connection.cursor() as cur:
        series_lock(symbol_id=symbol.pk, timeframe=timeframe)
        partitions_ensure(table="market_data_v2", first=frame["ts"].min(), last=frame["ts"].max())
        _stage(cur, frame)
        amendments = _write_amendments(
            cur, symbol=symbol, timeframe=timeframe, source=source, run_ref=run_ref, actor=actor
        )
        written = _upsert_from_stage(cur, symbol_id=symbol.pk, timeframe=timeframe, source=source)
    return UpsertResult(
        received=len(frame),
        inserted=written.inserted,
        updated=written.updated,
        unchanged=len(frame) - written.inserted - written.updated,
        amendments=amendments,
        first_ts=frame["ts"].iloc[0].to_pydatetime(),
        last_ts=frame["ts"].iloc[-1].to_pydatetime(),
    )


def changed_condition(table: str, excluded: str) -> str:
    old = ", ".join(f"{table}.{c}" for c in CANDLE_COLUMNS)
    new = ", ".join(_new_value(c, table, excluded) for c in CANDLE_COLUMNS)
    return f"({old}) IS DISTINCT FROM ({new})"


def _amendment_columns() -> tuple[str, str, str]:
    """SQL over a stored bar `m` and its staged restatement `s`: the names of the changed
    columns, and the old and the new values of those columns as jsonb_build_object arguments."""
    fields = ", ".join(f"CASE WHEN m.{c} IS DISTINCT FROM {_new_value(c, 'm')} THEN '{c}' END" for c in CANDLE_COLUMNS)
    old = ", ".join(
        f"'{c}', CASE WHEN m.{c} IS DISTINCT FROM {_new_value(c, 'm')} THEN to_jsonb(m.{c}) END" for c in CANDLE_COLUMNS
    )
    new = ", ".join(
        f"'{c}', CASE WHEN m.{c} IS DISTINCT FROM {_new_value(c, 'm')} THEN to_jsonb({_new_value(c, 'm')}) END"
        for c in CANDLE_COLUMNS
    )
    return fields, old, new


def _write_amendments(cur, *, symbol: Symbol, timeframe: str, source: str, run_ref: str, actor: str) -> int:
    fields, old, new = _amendment_columns()
    cur.execute(
        f"""
        INSERT INTO data_corrections
            (kind, run_ref, table_name, ticker, market, field, old_value, new_value, row_count, detail,
             created_by, created_at)
        SELECT %s, %s, 'market_data_v2', %s, %s, concat_ws(',', {fields}),
               jsonb_strip_nulls(jsonb_build_object({old}))::text,
               jsonb_strip_nulls(jsonb_build_object({new}))::text,
               1,
               jsonb_build_object('symbol_id', m.symbol_id, 'timeframe', m.timeframe, 'ts', m.ts,
                                  'revision_from', m.revision, 'revision_to', m.revision + 1,
                                  'source_from', m.source, 'source_to', %s::text),
               %s, now()
        FROM v2_stage s
        JOIN market_data_v2 m ON m.symbol_id = %s AND m.timeframe = %s AND m.ts = s.ts
        WHERE {changed_condition("m", "s")}
        """,  # noqa: S608 - column names are constants of this module
        [AMENDMENT_KIND, run_ref, symbol.ticker, symbol.market.code, source, actor, symbol.pk, timeframe],
    )
    return cur.rowcount


def _upsert_from_stage(cur, *, symbol_id: int, timeframe: str, source: str) -> StageWrite:
    cols = ", ".join(CANDLE_COLUMNS)
    select = ", ".join(f"s.{c}::bigint" if c == "trades" else f"s.{c}" for c in CANDLE_COLUMNS)
    updates = ", ".join(f"{c} = {_new_value(c, 'market_data_v2', 'EXCLUDED')}" for c in CANDLE_COLUMNS)
    cur.execute(
        f"""
        WITH up AS (
            INSERT INTO market_data_v2 (symbol_id, timeframe, ts, {cols}, source, revision, quality_flags,
                                        updated_at)
            SELECT %s, %s, s.ts, {select}, %s, 1, 0, now() FROM v2_stage s
            ON CONFLICT (symbol_id, timeframe, ts) DO UPDATE SET {updates},
                source = EXCLUDED.source,
                revision = market_data_v2.revision + 1,
                features_revision = NULL,
                updated_at = now()
            WHERE {changed_condition("market_data_v2", "EXCLUDED")}
            RETURNING revision
        )
        -- A new row has revision 1, a rewritten one 2 or more (`xmax = 0`, the usual test,
        -- is not allowed in RETURNING on a partitioned table).
        SELECT count(*) FILTER (WHERE revision = 1), count(*) FILTER (WHERE revision > 1) FROM up
        """,  # noqa: S608 - column names are constants of this module
        [symbol_id, timeframe, source],
    )
    inserted, updated = cur.fetchone()
    return StageWrite(inserted=int(inserted), updated=int(updated))


# --- many series at once (the chunked feature step) --------------------------------------
# A stage table with `symbol_id`, `timeframe`, `ts` and the candle columns (float8), holding
# the candles of many series: the same amendment and upsert as above, one statement each.


def stage_amendments(cur, *, stage: str, source: str, run_ref: str, actor: str = "", where: str = "true") -> int:
    """One amendment in data_corrections per staged bar that restates a stored one (the same
    rows `_write_amendments` writes for one series); returns how many."""
    fields, old, new = _amendment_columns()
    cur.execute(
        f"""
        INSERT INTO data_corrections
            (kind, run_ref, table_name, ticker, market, field, old_value, new_value, row_count, detail,
             created_by, created_at)
        SELECT %s, %s, 'market_data_v2', sy.ticker, mk.code, concat_ws(',', {fields}),
               jsonb_strip_nulls(jsonb_build_object({old}))::text,
               jsonb_strip_nulls(jsonb_build_object({new}))::text,
               1,
               jsonb_build_object('symbol_id', m.symbol_id, 'timeframe', m.timeframe, 'ts', m.ts,
                                  'revision_from', m.revision, 'revision_to', m.revision + 1,
                                  'source_from', m.source, 'source_to', %s::text),
               %s, now()
        FROM {stage} s
        JOIN market_data_v2 m ON m.symbol_id = s.symbol_id AND m.timeframe = s.timeframe AND m.ts = s.ts
        JOIN symbols sy ON sy.id = s.symbol_id
        JOIN markets mk ON mk.id = sy.market_id
        WHERE ({where}) AND {changed_condition("m", "s")}
        """,  # noqa: S608 - table and column names are constants of our code
        [AMENDMENT_KIND, run_ref, source, actor],
    )
    return cur.rowcount


def stage_upsert(cur, *, stage: str, source: str, where: str = "true") -> StageWrite:
    """Insert the staged bars that are new, rewrite the changed ones (revision + 1, features
    stale), leave the unchanged ones alone: `_upsert_from_stage` for many series (the staged
    rows `where` says)."""
    cols = ", ".join(CANDLE_COLUMNS)
    select = ", ".join(f"s.{c}::bigint" if c == "trades" else f"s.{c}" for c in CANDLE_COLUMNS)
    updates = ", ".join(f"{c} = {_new_value(c, 'market_data_v2', 'EXCLUDED')}" for c in CANDLE_COLUMNS)
    cur.execute(
        f"""
        WITH up AS (
            INSERT INTO market_data_v2 (symbol_id, timeframe, ts, {cols}, source, revision, quality_flags,
                                        updated_at)
            SELECT s.symbol_id, s.timeframe, s.ts, {select}, %s, 1, 0, now() FROM {stage} s
            WHERE {where}
            ORDER BY s.symbol_id, s.timeframe, s.ts
            ON CONFLICT (symbol_id, timeframe, ts) DO UPDATE SET {updates},
                source = EXCLUDED.source,
                revision = market_data_v2.revision + 1,
                features_revision = NULL,
                updated_at = now()
            WHERE {changed_condition("market_data_v2", "EXCLUDED")}
            RETURNING revision
        )
        SELECT count(*) FILTER (WHERE revision = 1), count(*) FILTER (WHERE revision > 1) FROM up
        """,  # noqa: S608 - table and column names are constants of our code
        [source],
    )
    inserted, updated = cur.fetchone()
    return StageWrite(inserted=int(inserted), updated=int(updated))
