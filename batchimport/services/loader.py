"""Loading one file into market_data: binary COPY into a session temp table,
then one set-based INSERT … SELECT … ON CONFLICT.

The staging rows are committed batch by batch (a temp table is not
WAL-logged and lives in the worker's session), so progress and cancellation
work between batches, while `market_data` changes only in the final
transaction: a worker killed mid-file leaves nothing behind, and the retry
imports the whole file again.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from batchimport import metrics
from batchimport.markets import market_spec
from batchimport.models import ImportFile, ImportJob, ImportStatus, RejectedRow
from batchimport.parsing import Candle, CsvFileReader, Reject
from batchimport.services.paths import data_root
from etl.models import DataCorrection
from etl.progress import ProgressReporter
from etl.selectors import symbol_for_pair
from etl.services.partitions import partitions_ensure_from

# SQL is spelled out in full (no string building), with only bound parameters.
log = logging.getLogger(__name__)

STAGE_DDL = """
CREATE TEMP TABLE IF NOT EXISTS import_stage (
    line integer NOT NULL,
    ts timestamptz NOT NULL,
    open text NOT NULL,
    high text NOT NULL,
    low text NOT NULL,
    close text NOT NULL,
    volume text NOT NULL,
    adj_close text,
    extra jsonb
)
"""
STAGE_TRUNCATE = "TRUNCATE import_stage"
STAGE_COPY = "COPY import_stage (line, ts, open, high, low, close, volume, adj_close, extra) FROM STDIN (FORMAT BINARY)"
# Numbers travel as the file's own text and are cast once by PostgreSQL: exact,
# and much cheaper than building Decimal objects in Python.
STAGE_TYPES = ["int4", "timestamptz", "text", "text", "text", "text", "text", "text", "jsonb"]
VALUE_COLUMNS = ("open", "high", "low", "close", "volume", "adj_close")

INSERT_SQL = """
INSERT INTO market_data (ticker, market, timeframe, ts, open, high, low, close, volume, adj_close,
                         asset_class, symbol_id, extra, import_file_id, updated_at)
SELECT %(ticker)s, %(market)s, %(timeframe)s, ts, open::numeric(28, 10), high::numeric(28, 10),
       low::numeric(28, 10), close::numeric(28, 10), volume::numeric(30, 8), adj_close::numeric(28, 10),
       %(asset_class)s, %(symbol_id)s, extra, %(file_id)s, now()
FROM import_stage
ON CONFLICT (ticker, market, timeframe, ts) DO NOTHING
"""
INSERT_FRESH_SQL = INSERT_SQL.replace("ON CONFLICT (ticker, market, timeframe, ts) DO NOTHING", "")
OVERLAP_SQL = """
SELECT EXISTS (SELECT 1 FROM market_data
               WHERE ticker = %(ticker)s AND market = %(market)s AND timeframe = %(timeframe)s
                 AND ts BETWEEN %(first)s AND %(last)s)
"""
CHANGED_COUNT_SQL = """
SELECT count(*) FROM import_stage s
JOIN market_data m ON m.ticker = %(ticker)s AND m.market = %(market)s AND m.timeframe = %(timeframe)s AND m.ts = s.ts
WHERE (m.open, m.high, m.low, m.close, m.volume, m.adj_close)
      IS DISTINCT FROM (s.open::numeric(28, 10), s.high::numeric(28, 10), s.low::numeric(28, 10),
                       s.close::numeric(28, 10), s.volume::numeric(30, 8), s.adj_close::numeric(28, 10))
"""
CHANGED_SAMPLE_SQL = """
SELECT s.ts, m.open, m.high, m.low, m.close, m.volume, m.adj_close,
       s.open::numeric(28, 10), s.high::numeric(28, 10), s.low::numeric(28, 10), s.close::numeric(28, 10),
       s.volume::numeric(30, 8), s.adj_close::numeric(28, 10)
FROM import_stage s
JOIN market_data m ON m.ticker = %(ticker)s AND m.market = %(market)s AND m.timeframe = %(timeframe)s AND m.ts = s.ts
WHERE (m.open, m.high, m.low, m.close, m.volume, m.adj_close)
      IS DISTINCT FROM (s.open::numeric(28, 10), s.high::numeric(28, 10), s.low::numeric(28, 10),
                       s.close::numeric(28, 10), s.volume::numeric(30, 8), s.adj_close::numeric(28, 10))
ORDER BY s.ts LIMIT 20
"""
OVERWRITE_SQL = """
UPDATE market_data m
SET open = s.open::numeric(28, 10), high = s.high::numeric(28, 10), low = s.low::numeric(28, 10),
    close = s.close::numeric(28, 10), volume = s.volume::numeric(30, 8), adj_close = s.adj_close::numeric(28, 10),
    extra = s.extra, import_file_id = %(file_id)s, updated_at = now()
FROM import_stage s
WHERE m.ticker = %(ticker)s AND m.market = %(market)s AND m.timeframe = %(timeframe)s AND m.ts = s.ts
  AND (m.open, m.high, m.low, m.close, m.volume, m.adj_close)
      IS DISTINCT FROM (s.open::numeric(28, 10), s.high::numeric(28, 10), s.low::numeric(28, 10),
                       s.close::numeric(28, 10), s.volume::numeric(30, 8), s.adj_close::numeric(28, 10))
"""
# Later rows with the timestamp of an earlier row of the same file are rejected.
DEDUPE_SQL = """
WITH ranked AS (SELECT line, min(line) OVER (PARTITION BY ts) AS first_line FROM import_stage)
DELETE FROM import_stage s USING ranked r
WHERE s.line = r.line AND r.line <> r.first_line
RETURNING s.line, r.first_line
"""


@dataclass(frozen=True, slots=True)
class FileResult:
    file_id: int
    status: str
    rows_read: int = 0
    rows_inserted: int = 0
    rows_duplicates: int = 0
    rows_updated: int = 0
    rows_rejected: int = 0
    rows_changed: int = 0
    seconds: float = 0.0
    error: str = ""

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0


def fingerprint(path: Path) -> tuple[int, str]:
    """(size, sha256) of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            size += len(block)
            digest.update(block)
    return size, digest.hexdigest()


def _unchanged_since_success(import_file: ImportFile, size: int, sha256: str) -> bool:
    return (
        ImportFile.objects.filter(relpath=import_file.relpath, size=size, sha256=sha256, status=ImportStatus.SUCCEEDED)
        .exclude(pk=import_file.pk)
        .exists()
    )


def _raw_cursor():
    connection.ensure_connection()
    return connection.connection.cursor()


def _write_rejects(cur, import_file: ImportFile, rejects: list[Reject]) -> None:
    if not rejects:
        return
    now = timezone.now()
    with cur.copy("COPY rejected_rows (file_id, job_id, line, raw, reason, field, created_at) FROM STDIN") as copy:
        for r in rejects:
            copy.write_row((import_file.pk, import_file.job_id, r.line, r.raw, r.reason[:300], r.field[:64], now))


def _copy_candles(cur, candles: list[Candle]) -> None:
    with cur.copy(STAGE_COPY) as copy:
        copy.set_types(STAGE_TYPES)
        for candle in candles:
            copy.write_row(candle)


def _raw_lines(path: Path, wanted: set[int]) -> dict[int, str]:
    """The text of the given physical lines (second pass, only when a file repeats timestamps)."""
    found: dict[int, str] = {}
    with open(path, encoding="utf-8-sig", newline="") as handle:
        for number, text in enumerate(handle, start=1):
            if number in wanted:
                found[number] = text.rstrip("\r\n")
                if len(found) == len(wanted):
                    break
    return found


@dataclass(frozen=True, slots=True)
class StageResult:
    """What the read phase staged: valid rows in `import_stage`, rejects written."""

    accepted: int
    rejected: int
    span: tuple[datetime, datetime] | None  # first and last stamp staged
    monotonic: bool
    seconds: float


@dataclass(frozen=True, slots=True)
class UpsertResult:
    """What the write phase did to market_data."""

    repeated: int  # rows of the file repeating an earlier row's timestamp (rejected now)
    inserted: int
    updated: int
    changed: int  # stored rows whose values differ from the file's


def file_load(
    *,
    import_file: ImportFile,
    job: ImportJob,
    batch_size: int = 50_000,
    on_batch: Callable[[int], None] | None = None,
) -> FileResult:
    """Read, validate and load one claimed file; write its rejects, its counts
    and the job's counts. Returns the file's result; raises `Cancelled`,
    `FileFormatError`/`OSError` (the caller decides retry or dead letter)."""
    started = time.monotonic()
    path = data_root() / import_file.relpath  # this host's mount point of the share
    size, sha256 = fingerprint(path)
    ImportFile.objects.filter(pk=import_file.pk).update(size=size, sha256=sha256)
    import_file.size, import_file.sha256 = size, sha256
    if not job.overwrite and _unchanged_since_success(import_file, size, sha256):
        return _finish(import_file, job, status=ImportStatus.SKIPPED, counts={}, started=started)
    reader = CsvFileReader(path, market=import_file.market)
    cur = _raw_cursor()
    staged = _stage_file(cur, import_file=import_file, job=job, reader=reader, batch_size=batch_size, on_batch=on_batch)
    params = _load_params(import_file, job, reader)
    with transaction.atomic():
        upserted = _upsert(cur, import_file=import_file, job=job, path=path, params=params, staged=staged)
        accepted = staged.accepted - upserted.repeated
        counts = {
            "rows_read": staged.accepted + staged.rejected,
            "rows_inserted": upserted.inserted,
            "rows_duplicates": accepted - upserted.inserted - upserted.updated,
            "rows_updated": upserted.updated,
            "rows_rejected": staged.rejected + upserted.repeated,
            "rows_changed": upserted.changed - upserted.updated,
        }
        cur.execute(STAGE_TRUNCATE)
        log.info(
            "%s: %s rows, read+stage %.1fs, upsert %.1fs",
            import_file.relpath,
            counts["rows_read"],
            staged.seconds,
            time.monotonic() - started - staged.seconds,
        )
        return _finish(import_file, job, status=ImportStatus.SUCCEEDED, counts=counts, started=started)


class _StageWriter:
    """Writes a file's rows batch by batch: candles by binary COPY into the
    session's `import_stage`, rejects into `rejected_rows`; after each batch
    the progress (file and job) and a cancel check."""

    def __init__(self, cur, *, import_file: ImportFile, job: ImportJob, reader: CsvFileReader, on_batch):
        self.cur, self.import_file, self.job, self.reader, self.on_batch = cur, import_file, job, reader, on_batch
        self.reporter = ProgressReporter(import_file, label=import_file.relpath)
        self.accepted = self.rejected = self.last_bytes = 0
        self.first: datetime | None = None
        self.last: datetime | None = None

    def flush(self, candles: list[Candle], rejects: list[Reject]) -> None:
        if candles:
            _copy_candles(self.cur, candles)
            low, high = sorted((candles[0].ts, candles[-1].ts))
            self.first = low if self.first is None else min(self.first, low)
            self.last = high if self.last is None else max(self.last, high)
        _write_rejects(self.cur, self.import_file, rejects)
        self.accepted += len(candles)
        self.rejected += len(rejects)
        n = len(candles) + len(rejects)
        candles.clear()
        rejects.clear()
        self._progress(n)

    def _progress(self, n: int) -> None:
        reader, reporter = self.reader, self.reporter
        delta = reader.bytes_read - self.last_bytes
        self.last_bytes = reader.bytes_read
        ImportJob.objects.filter(pk__in=_job_ids(self.job)).update(progress_done=F("progress_done") + delta)
        if reporter.total is None and reader.bytes_read:
            reporter.set_total(max(n, int((self.import_file.size or 0) * reader.rows_read / reader.bytes_read)))
        reporter.advance(n, check_cancel=False)
        if self.on_batch is not None:
            self.on_batch(n)
        # one indexed read per batch: cancellation takes effect at the next batch boundary
        reporter.check_cancel()

    def close(self) -> None:
        self.reporter.close()


def _stage_file(
    cur, *, import_file: ImportFile, job: ImportJob, reader: CsvFileReader, batch_size: int, on_batch
) -> StageResult:
    """The read phase: stream the file into the stage, committing batch by batch."""
    started = time.monotonic()
    cur.execute(STAGE_DDL)
    cur.execute(STAGE_TRUNCATE)
    # Rejects of an earlier, interrupted attempt are replaced by this one's.
    RejectedRow.objects.filter(file=import_file).delete()
    writer = _StageWriter(cur, import_file=import_file, job=job, reader=reader, on_batch=on_batch)
    batch_size = max(1, batch_size)
    candles: list[Candle] = []
    rejects: list[Reject] = []
    try:
        for item in reader:
            if type(item) is Candle:
                candles.append(item)
                if len(candles) >= batch_size:
                    writer.flush(candles, rejects)
            else:
                rejects.append(item)
        writer.flush(candles, rejects)
    finally:
        writer.close()
    span = (writer.first, writer.last) if writer.first is not None else None
    return StageResult(
        accepted=writer.accepted,
        rejected=writer.rejected,
        span=span,
        monotonic=reader.monotonic,
        seconds=time.monotonic() - started,
    )


def _load_params(import_file: ImportFile, job: ImportJob, reader: CsvFileReader) -> dict:
    """Record what reading told about the file; the bound parameters of the write phase."""
    meta = reader.meta
    ImportFile.objects.filter(pk=import_file.pk).update(
        layout=meta.layout if meta else "", timeframe=meta.timeframe if meta else "", ticker=reader.ticker
    )
    venue = market_spec(import_file.market).venue
    # A known symbol gives the candle its link and its true asset class, so a clean
    # import needs no correction; an unknown one keeps the folder's word until sync
    # creates the symbol and the correct step repairs it (docs/import.md).
    symbol = symbol_for_pair(ticker=reader.ticker, market=venue)
    known_class = symbol.asset_class.code if symbol is not None and symbol.asset_class is not None else None
    return {
        "ticker": reader.ticker,
        "market": venue,
        "timeframe": meta.timeframe if meta else "",
        "asset_class": known_class or import_file.market,
        "symbol_id": symbol.pk if symbol is not None else None,
        "file_id": import_file.pk,
    }


def _upsert(cur, *, import_file: ImportFile, job: ImportJob, path: Path, params: dict, staged: StageResult):
    """The write phase (inside the caller's transaction): reject repeated
    timestamps, insert the new rows, count (and with `overwrite` rewrite) the
    changed ones."""
    repeated = 0 if staged.monotonic else _reject_repeats(cur, import_file, path)
    inserted = updated = changed = 0
    if staged.accepted - repeated:
        partitions_ensure_from(table="market_data", source="import_stage")  # an old history file's years
        inserted = _insert(cur, params, staged.span if staged.monotonic else None)
    if staged.accepted - repeated > inserted:
        cur.execute(CHANGED_COUNT_SQL, params)
        changed = cur.fetchone()[0]
        if changed and job.overwrite:
            updated = _overwrite(cur, import_file, job, params)
    return UpsertResult(repeated=repeated, inserted=inserted, updated=updated, changed=changed)


def _reject_repeats(cur, import_file: ImportFile, path: Path) -> int:
    """Later rows with the timestamp of an earlier row of the file leave the stage as rejects."""
    cur.execute(DEDUPE_SQL)
    repeated = cur.fetchall()
    if repeated:
        raw = _raw_lines(path, {line for line, _ in repeated})
        rejects = [
            Reject(line, raw.get(line, ""), f"duplicate: same timestamp as line {first}", "ts")
            for line, first in repeated
        ]
        _write_rejects(cur, import_file, rejects)
    return len(repeated)


def _overwrite(cur, import_file: ImportFile, job: ImportJob, params: dict) -> int:
    """Rewrite the stored rows whose values differ, and record it in the audit trail."""
    cur.execute(CHANGED_SAMPLE_SQL, params)
    sample = [_describe_change(row) for row in cur.fetchall()]
    cur.execute(OVERWRITE_SQL, params)
    updated = cur.rowcount
    DataCorrection.objects.create(
        kind="import_overwrite",
        run_ref=f"import:{job.pk}",
        table_name="market_data",
        ticker=params["ticker"],
        market=params["market"],
        field=",".join(VALUE_COLUMNS),
        row_count=updated,
        detail={"file": import_file.relpath, "timeframe": params["timeframe"], "sample": sample},
        created_by=job.requested_by,
    )
    return updated


def _insert(cur, params: dict, span: tuple[datetime, datetime] | None) -> int:
    """Insert the staged rows; returns how many were new.

    `INSERT … ON CONFLICT` pays for speculative insertion on every row (about
    1.5x a plain INSERT here, see docs/import.md). So when no stored candle of
    this ticker/market/timeframe falls in the file's time range (a first
    import), the same INSERT … SELECT runs without the ON CONFLICT clause, in a
    savepoint; if another worker inserted the same candles meanwhile, the
    unique key refuses it and the ON CONFLICT statement runs instead."""
    if span:
        cur.execute(OVERLAP_SQL, {**params, "first": span[0], "last": span[1]})
        if not cur.fetchone()[0]:
            try:
                with transaction.atomic():
                    cur.execute(INSERT_FRESH_SQL, params)
                return cur.rowcount
            except psycopg.errors.UniqueViolation:
                pass
    cur.execute(INSERT_SQL, params)
    return cur.rowcount


def _describe_change(row) -> dict:
    n = len(VALUE_COLUMNS)
    old, new = row[1 : 1 + n], row[1 + n :]
    return {
        "ts": row[0].isoformat(),
        "old": {c: str(v) for c, v in zip(VALUE_COLUMNS, old, strict=True)},
        "new": {c: str(v) for c, v in zip(VALUE_COLUMNS, new, strict=True)},
    }


def _job_ids(job: ImportJob) -> list[int]:
    return [job.pk, job.parent_id] if job.parent_id else [job.pk]


def _finish(import_file: ImportFile, job: ImportJob, *, status: str, counts: dict, started: float) -> FileResult:
    """Record the file's outcome and add it to its job (and the parent) in one
    transaction, so the job's counts always equal the sum of its files'."""
    seconds = time.monotonic() - started
    rate = round(counts.get("rows_read", 0) / seconds, 1) if seconds > 0 else None
    with transaction.atomic():
        ImportFile.objects.filter(pk=import_file.pk).update(
            status=status, finished_at=timezone.now(), rate_per_second=rate, error="", next_attempt_at=None, **counts
        )
        increments = {name: F(name) + value for name, value in counts.items()}
        increments["files_done"] = F("files_done") + 1
        if status == ImportStatus.SKIPPED:
            increments["files_skipped"] = F("files_skipped") + 1
            increments["progress_done"] = F("progress_done") + (import_file.size or 0)
        ImportJob.objects.filter(pk__in=_job_ids(job)).update(**increments)
    metrics.import_files.labels(status=status).inc()
    for outcome in ("inserted", "duplicates", "updated", "rejected"):
        if counts.get(f"rows_{outcome}"):
            metrics.import_rows.labels(outcome=outcome).inc(counts[f"rows_{outcome}"])
    return FileResult(file_id=import_file.pk, status=status, seconds=seconds, **counts)
