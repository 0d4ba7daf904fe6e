"""The read phase of a group of claimed files: each file streamed through the
parser into the session's temp table `import_stage_rows`, its rejects into
`rejected_rows`.

The rows of several files share one binary COPY per flush (every `batch_size`
rows, and once at the end of the group), each row tagged with its file's id;
after each flush one statement adds the bytes read to the jobs' progress, one
records the progress of a file still being read, and one reads the group's
cancel flags, so cancellation takes effect between flushes. Nothing here
touches `market_data`: a worker killed while reading leaves only a temp table,
which dies with its session, and rejects that the next attempt replaces.

A file that cannot be read (missing, unreadable, not UTF-8, of no known layout)
fails alone: its staged rows and rejects are dropped and the others go on.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.db import connection
from django.utils import timezone

from batchimport.models import ImportFile, RejectedRow
from batchimport.parsing import Candle, CsvFileReader, FileFormatError, Reject, plausible_dates
from etl.models import MarketData
from etl.progress import Cancelled
from etl.sqlarrays import int_array

# What reading one file can raise: its own fault or its host's (FileFormatError
# and UnicodeError are ValueErrors). Database errors are not among them: those
# concern the whole group.
FILE_ERRORS = (OSError, ValueError, csv.Error)

TICKER_LENGTH = MarketData._meta.get_field("ticker").max_length

STAGE_DDL = """
CREATE TEMP TABLE IF NOT EXISTS import_stage_rows (
    file_id bigint NOT NULL,
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
STAGE_TRUNCATE = "TRUNCATE import_stage_rows"
STAGE_LEFTOVER = "SELECT EXISTS (SELECT 1 FROM import_stage_rows)"
STAGE_COPY = (
    "COPY import_stage_rows (file_id, line, ts, open, high, low, close, volume, adj_close, extra)"
    " FROM STDIN (FORMAT BINARY)"
)
# Numbers travel as the file's own text and are cast once by PostgreSQL: exact,
# and much cheaper than building Decimal objects in Python.
STAGE_TYPES = ["int8", "int4", "timestamptz", "text", "text", "text", "text", "text", "text", "jsonb"]
REJECTS_DELETE_SQL = "DELETE FROM rejected_rows WHERE file_id = ANY(%s::bigint[])"
STAGE_DROP_FILE = "DELETE FROM import_stage_rows WHERE file_id = %s"
REJECTS_COPY = "COPY rejected_rows (file_id, job_id, line, raw, reason, field, created_at) FROM STDIN"
JOBS_PROGRESS_SQL = """
UPDATE import_jobs j SET progress_done = j.progress_done + v.bytes
FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, bytes) WHERE j.id = v.id
"""
FILE_PROGRESS_SQL = (
    "UPDATE import_files SET progress_done = %s, progress_total = %s, rate_per_second = %s WHERE id = %s"
)
CANCEL_SQL = "SELECT EXISTS (SELECT 1 FROM import_files WHERE id = ANY(%s::bigint[]) AND cancel_requested)"


@dataclass(frozen=True, slots=True)
class StagedFile:
    """What the read phase staged of one file."""

    file: ImportFile
    path: Path
    ticker: str
    layout: str
    timeframe: str
    accepted: int
    rejected: int
    span: tuple[datetime, datetime] | None  # first and last stamp staged (meaningful when monotonic)
    monotonic: bool
    seconds: float


def raw_cursor():
    """The session's psycopg cursor (binary COPY, the temp tables)."""
    connection.ensure_connection()
    return connection.connection.cursor()


def write_rejects(cur, rows: Sequence[tuple]) -> None:
    """COPY reject rows (file_id, job_id, line, raw, reason, field, created_at) into `rejected_rows`."""
    if not rows:
        return
    with cur.copy(REJECTS_COPY) as copy:
        for row in rows:
            copy.write_row(row)


def reject_row(import_file: ImportFile, reject: Reject, now: datetime) -> tuple:
    return (import_file.id, import_file.job_id, reject.line, reject.raw, reject.reason[:300], reject.field[:64], now)


class GroupStager:
    """Stages the files of one group, one after the other, into one temp table.

    `stage(file, path)` reads a file to its end and returns its `StagedFile`, or
    raises what reading it raised (one of FILE_ERRORS) after taking its rows back
    out of the stage; `close()` flushes what is left. Between flushes: progress
    (jobs in bytes, the file being read in rows), `on_batch(rows)`, then a cancel
    check that raises `Cancelled`."""

    def __init__(self, cur, *, files: Sequence[ImportFile], batch_size: int, on_batch: Callable[[int], None] | None):
        self.cur, self.batch_size, self.on_batch = cur, max(1, batch_size), on_batch
        self.file_ids = [f.id for f in files]
        self._file_ids_array = int_array(self.file_ids)
        self.candles: list[tuple] = []  # staged rows: (file_id, *Candle)
        self.rejects: list[tuple] = []
        self.now = timezone.now()
        self.dates = plausible_dates()  # once a group: the same for all its files
        self.flushes = 0
        self.bytes_by_job: dict[int, int] = {}  # read since the last flush
        self._current: tuple[ImportFile, CsvFileReader, float] | None = None
        self._reported_bytes = 0
        cur.execute(STAGE_DDL)
        # Emptied by the last group's own transaction; left full only by a failed one.
        # (A TRUNCATE is a catalog write: a WAL flush of its own for every group.)
        cur.execute(STAGE_LEFTOVER)
        if cur.fetchone()[0]:
            cur.execute(STAGE_TRUNCATE)
        # Rejects of an earlier, interrupted attempt are replaced by this one's.
        cur.execute(REJECTS_DELETE_SQL, [self._file_ids_array])

    def stage(self, import_file: ImportFile, path: Path, *, content: bytes | None = None) -> StagedFile:
        """`content`: the file's bytes when the caller read them already (see CsvFileReader)."""
        started = time.monotonic()
        reader = CsvFileReader(path, market=import_file.market, dates=self.dates, content=content)
        if len(reader.ticker) > TICKER_LENGTH:
            raise FileFormatError(
                f"{path.name}: the ticker its name gives, {reader.ticker[:40]!r}…, is longer than"
                f" {TICKER_LENGTH} characters; rename the file"
            )
        self._current, self._reported_bytes = (import_file, reader, started), 0
        tally = _Tally(self, import_file)
        try:
            self._read(import_file, reader, tally)
        except FILE_ERRORS:
            self._take_back(import_file, tally)
            raise
        finally:
            self._current = None
        tally.close()
        self._count_bytes(import_file, reader.bytes_read - self._reported_bytes)
        meta = reader.meta
        return StagedFile(
            file=import_file,
            path=path,
            ticker=reader.ticker,
            layout=meta.layout if meta else "",
            timeframe=meta.timeframe if meta else "",
            accepted=tally.accepted,
            rejected=tally.rejected,
            span=tally.span,
            monotonic=reader.monotonic,
            seconds=time.monotonic() - started,
        )

    def _read(self, import_file: ImportFile, reader: CsvFileReader, tally: _Tally) -> None:
        file_id, batch_size, now = import_file.id, self.batch_size, self.now
        candles, rejects = self.candles, self.rejects
        for item in reader:
            if type(item) is Candle:
                candles.append((file_id, *item))
                if len(candles) >= batch_size:
                    tally.before_flush()
                    self.flush()
            else:
                rejects.append(reject_row(import_file, item, now))

    def _take_back(self, import_file: ImportFile, tally: _Tally) -> None:
        """Remove a file that failed mid-read from the stage and the buffers."""
        del self.candles[tally.candle_mark :]
        del self.rejects[tally.reject_mark :]
        if tally.flushed:
            self.cur.execute(STAGE_DROP_FILE, [import_file.id])
            RejectedRow.objects.filter(file_id=import_file.id).delete()

    def _count_bytes(self, import_file: ImportFile, delta: int) -> None:
        job = import_file.job
        for job_id in (job.id, job.parent_id):
            if job_id is not None and delta:
                self.bytes_by_job[job_id] = self.bytes_by_job.get(job_id, 0) + delta

    def flush(self, *, last: bool = False) -> None:
        """COPY the buffered rows and rejects, then progress, `on_batch` and the cancel
        check. The `last` flush leaves the jobs' bytes in `bytes_by_job` for the
        group's transaction to add (one commit less per group)."""
        if self.candles:
            with self.cur.copy(STAGE_COPY) as copy:
                copy.set_types(STAGE_TYPES)
                for row in self.candles:
                    copy.write_row(row)
        write_rejects(self.cur, self.rejects)
        n = len(self.candles) + len(self.rejects)
        self.candles.clear()
        self.rejects.clear()
        self.flushes += 1
        self._progress(n, last=last)

    def _progress(self, n: int, *, last: bool) -> None:
        if self._current is not None:
            import_file, reader, started = self._current
            self._count_bytes(import_file, reader.bytes_read - self._reported_bytes)
            self._reported_bytes = reader.bytes_read
            total = int((import_file.size or 0) * reader.rows_read / reader.bytes_read) if reader.bytes_read else None
            elapsed = time.monotonic() - started
            rate = round(reader.rows_read / elapsed, 3) if elapsed > 0 else None
            total = max(total or 0, reader.rows_read)
            self.cur.execute(FILE_PROGRESS_SQL, [reader.rows_read, total, rate, import_file.id])
        if self.bytes_by_job and not last:
            ids = sorted(self.bytes_by_job)  # one order for every worker: no deadlock on the job rows
            self.cur.execute(JOBS_PROGRESS_SQL, [int_array(ids), int_array(self.bytes_by_job[i] for i in ids)])
            self.bytes_by_job.clear()
        if self.on_batch is not None:
            self.on_batch(n)
        # one indexed read per flush: cancellation takes effect at the next flush
        self.cur.execute(CANCEL_SQL, [self._file_ids_array])
        if self.cur.fetchone()[0]:
            raise Cancelled(f"import files {self.file_ids} were cancelled")

    def close(self) -> None:
        """Flush what is left (also when nothing is: the last progress and cancel check)."""
        self.flush(last=True)


class _Tally:
    """One file's share of the stager's buffers: where its rows start in them,
    how many it staged and rejected, and its first and last stamps."""

    def __init__(self, stager: GroupStager, import_file: ImportFile):
        self.stager = stager
        self.candle_mark = len(stager.candles)
        self.reject_mark = len(stager.rejects)
        self.accepted = self.rejected = 0
        self.flushed = False
        self.first: datetime | None = None
        self.last: datetime | None = None

    def _count(self) -> None:
        """Take this file's rows now in the buffers into the counts."""
        candles = self.stager.candles
        if len(candles) > self.candle_mark:
            if self.first is None:
                self.first = candles[self.candle_mark][2]
            self.last = candles[-1][2]
        self.accepted += len(candles) - self.candle_mark
        self.rejected += len(self.stager.rejects) - self.reject_mark

    def before_flush(self) -> None:
        self._count()
        self.candle_mark = self.reject_mark = 0
        self.flushed = True

    def close(self) -> None:
        self._count()

    @property
    def span(self) -> tuple[datetime, datetime] | None:
        if self.first is None or self.last is None:
            return None
        low, high = sorted((self.first, self.last))
        return low, high
