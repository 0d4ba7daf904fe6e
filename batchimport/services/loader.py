"""Loading a group of claimed files into market_data: the rows of all of them
staged by binary COPY into one session temp table (`staging.GroupStager`),
their symbols resolved, then one transaction that writes them all with set-based
statements and records each file's own counts, status and rejects.

A group is a few files to a few hundred (see `jobs.files_claim`): the fixed cost
of a file — claiming, fingerprint checks, staging, the INSERT, the counters — is
paid once per group, while every file keeps its own exact accounting (read =
inserted + duplicates + updated + rejected). `market_data` changes only in the
group's final transaction, so a worker killed mid-group leaves nothing behind and
the retry reads its files again. A group of one file is the one-at-a-time load.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from django.db import transaction
from django.utils import timezone

from batchimport import metrics
from batchimport.markets import market_spec
from batchimport.models import ImportFile, ImportStatus
from batchimport.parsing import Reject
from batchimport.services.paths import data_root
from batchimport.services.staging import (
    FILE_ERRORS,
    STAGE_TRUNCATE,
    GroupStager,
    StagedFile,
    raw_cursor,
    reject_row,
    write_rejects,
)
from etl.models import DataCorrection
from etl.services.partitions import partitions_ensure_from
from etl.services.symbols import SymbolLink, symbols_ensure
from etl.sqlarrays import array_literal, int_array, text_array

log = logging.getLogger(__name__)

# SQL with only bound parameters; the statements are assembled from the module's
# own constants (never from input), so the column list below is written once.

# The files of the group being written: one row each, joined to their staged rows.
FILES_DDL = """
CREATE TEMP TABLE IF NOT EXISTS import_stage_files (
    file_id bigint PRIMARY KEY,
    job_id bigint NOT NULL,
    ticker text NOT NULL,
    market text NOT NULL,
    timeframe text NOT NULL,
    asset_class text,
    symbol_id bigint,
    first_ts timestamptz,
    last_ts timestamptz
)
"""
FILES_TRUNCATE = "TRUNCATE import_stage_files"
FILES_FILL = """
INSERT INTO import_stage_files
SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[],
                     %s::timestamptz[], %s::timestamptz[])
"""

# The market_data columns an import writes and, in the same order, what fills them
# (s: a staged row of import_stage_rows, f: its file in import_stage_files).
# Kept in one place: the INSERTs below and the overwrite are built from these.
INSERT_COLUMNS = (
    "ticker, market, timeframe, ts, open, high, low, close, volume, adj_close,"
    " asset_class, symbol_id, extra, import_file_id, updated_at"
)
INSERT_VALUES = (
    "f.ticker, f.market, f.timeframe, s.ts, s.open::numeric(28, 10), s.high::numeric(28, 10),"
    " s.low::numeric(28, 10), s.close::numeric(28, 10), s.volume::numeric(30, 8), s.adj_close::numeric(28, 10),"
    " f.asset_class, f.symbol_id, s.extra, f.file_id, now()"
)
OVERWRITE_SET = (
    "open = s.open::numeric(28, 10), high = s.high::numeric(28, 10), low = s.low::numeric(28, 10),"
    " close = s.close::numeric(28, 10), volume = s.volume::numeric(30, 8), adj_close = s.adj_close::numeric(28, 10),"
    " extra = s.extra, import_file_id = f.file_id, updated_at = now()"
)
VALUE_COLUMNS = ("open", "high", "low", "close", "volume", "adj_close")

_FROM_STAGE = "FROM import_stage_rows s JOIN import_stage_files f ON f.file_id = s.file_id"
_JOIN_STORED = (
    "JOIN market_data m ON m.ticker = f.ticker AND m.market = f.market AND m.timeframe = f.timeframe AND m.ts = s.ts"
)
_OF_FILES = "WHERE s.file_id = ANY(%(files)s::bigint[])"
_DIFFERS = (
    "(m.open, m.high, m.low, m.close, m.volume, m.adj_close) IS DISTINCT FROM"
    " (s.open::numeric(28, 10), s.high::numeric(28, 10), s.low::numeric(28, 10), s.close::numeric(28, 10),"
    " s.volume::numeric(30, 8), s.adj_close::numeric(28, 10))"
)

INSERT_FRESH_SQL = f"INSERT INTO market_data ({INSERT_COLUMNS}) SELECT {INSERT_VALUES} {_FROM_STAGE} {_OF_FILES}"
INSERT_SQL = f"{INSERT_FRESH_SQL} ON CONFLICT (ticker, market, timeframe, ts) DO NOTHING"
# Several files in one statement: how many rows each series got (a round holds one
# file per series, so: each file).
INSERT_COUNTED_SQL = f"""
WITH inserted AS ({INSERT_SQL} RETURNING ticker, market, timeframe)
SELECT ticker, market, timeframe, count(*) FROM inserted GROUP BY 1, 2, 3
"""  # noqa: S608 - constants only
OVERLAP_SQL = """
SELECT f.file_id FROM import_stage_files f
WHERE f.file_id = ANY(%(files)s::bigint[])
  AND EXISTS (SELECT 1 FROM market_data m
              WHERE m.ticker = f.ticker AND m.market = f.market AND m.timeframe = f.timeframe
                AND m.ts BETWEEN f.first_ts AND f.last_ts)
"""
CHANGED_COUNT_SQL = f"SELECT s.file_id, count(*) {_FROM_STAGE} {_JOIN_STORED} {_OF_FILES} AND {_DIFFERS} GROUP BY 1"
CHANGED_SAMPLE_SQL = f"""
SELECT file_id, ts, o1, h1, l1, c1, v1, a1, o2, h2, l2, c2, v2, a2 FROM (
    SELECT s.file_id, s.ts, m.open AS o1, m.high AS h1, m.low AS l1, m.close AS c1, m.volume AS v1, m.adj_close AS a1,
           s.open::numeric(28, 10) AS o2, s.high::numeric(28, 10) AS h2, s.low::numeric(28, 10) AS l2,
           s.close::numeric(28, 10) AS c2, s.volume::numeric(30, 8) AS v2, s.adj_close::numeric(28, 10) AS a2,
           row_number() OVER (PARTITION BY s.file_id ORDER BY s.ts) AS n
    {_FROM_STAGE} {_JOIN_STORED} {_OF_FILES} AND {_DIFFERS}
) sample WHERE n <= 20 ORDER BY file_id, ts
"""  # noqa: S608 - constants only
OVERWRITE_SQL = f"""
WITH updated AS (
    UPDATE market_data m SET {OVERWRITE_SET}
    FROM import_stage_rows s JOIN import_stage_files f ON f.file_id = s.file_id
    {_OF_FILES} AND m.ticker = f.ticker AND m.market = f.market AND m.timeframe = f.timeframe AND m.ts = s.ts
      AND {_DIFFERS}
    RETURNING s.file_id
)
SELECT file_id, count(*) FROM updated GROUP BY file_id
"""  # noqa: S608 - constants only
# Later rows with the timestamp of an earlier row of the same file are rejected.
DEDUPE_SQL = """
WITH ranked AS (SELECT file_id, line, min(line) OVER (PARTITION BY file_id, ts) AS first_line
                FROM import_stage_rows WHERE file_id = ANY(%(files)s::bigint[]))
DELETE FROM import_stage_rows s USING ranked r
WHERE s.file_id = r.file_id AND s.line = r.line AND r.line <> r.first_line
RETURNING s.file_id, s.line, r.first_line
"""
# One probe of the fingerprint index per file of the group (the LATERAL with its LIMIT cannot be
# turned into a join): written as `(relpath, size, sha256) IN (unnest …)` PostgreSQL hashed the
# group's files and scanned every succeeded file ever imported, a cost that grew with every
# hourly run (10,000 files: 40 ms a group).
UNCHANGED_SQL = """
SELECT v.relpath, v.size, v.sha256
FROM unnest(%s::text[], %s::bigint[], %s::text[]) AS v(relpath, size, sha256)
CROSS JOIN LATERAL (
    SELECT 1 FROM import_files f
    WHERE f.relpath = v.relpath AND f.size = v.size AND f.sha256 = v.sha256
      AND f.status = 'succeeded' AND f.id <> ALL(%s::bigint[])
    LIMIT 1
) done
"""
# `f.id = ANY(…)` as well as the join: the group's rows by their primary key. With the join alone
# PostgreSQL hashed the unnest and scanned every import file ever recorded (10,000 files: 45 ms a
# group of 500, growing with each hourly run).
FILES_FINISH_SQL = """
UPDATE import_files f SET
    status = v.status, finished_at = %s, rate_per_second = v.rate, error = '', next_attempt_at = NULL,
    rows_read = v.read, rows_inserted = v.inserted, rows_duplicates = v.duplicates, rows_updated = v.updated,
    rows_rejected = v.rejected, rows_changed = v.changed, size = v.size, sha256 = v.sha256,
    layout = COALESCE(v.layout, f.layout), timeframe = COALESCE(v.timeframe, f.timeframe),
    ticker = COALESCE(v.ticker, f.ticker),
    progress_done = COALESCE(v.progress, f.progress_done), progress_total = COALESCE(v.progress, f.progress_total)
FROM unnest(%s::bigint[], %s::text[], %s::float8[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[],
            %s::bigint[], %s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[])
    AS v(id, status, rate, read, inserted, duplicates, updated, rejected, changed, size, sha256, layout, timeframe,
         ticker, progress)
WHERE f.id = v.id AND f.id = ANY(%s::bigint[])
"""
JOBS_LOCK_SQL = "SELECT id FROM import_jobs WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE"
JOBS_FINISH_SQL = """
UPDATE import_jobs j SET
    rows_read = j.rows_read + v.read, rows_inserted = j.rows_inserted + v.inserted,
    rows_duplicates = j.rows_duplicates + v.duplicates, rows_updated = j.rows_updated + v.updated,
    rows_rejected = j.rows_rejected + v.rejected, rows_changed = j.rows_changed + v.changed,
    files_done = j.files_done + v.done, files_skipped = j.files_skipped + v.skipped,
    progress_done = j.progress_done + v.bytes
FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[],
            %s::bigint[], %s::bigint[], %s::bigint[])
    AS v(id, read, inserted, duplicates, updated, rejected, changed, done, skipped, bytes)
WHERE j.id = v.id
"""
# A file read again replaces the rejects earlier reads of it left (an interrupted
# attempt of another job, an older import): one row per line.
EARLIER_REJECTS_SQL = """
DELETE FROM rejected_rows r USING import_files f
WHERE r.file_id = f.id AND f.relpath = ANY(%s::text[]) AND r.file_id <> ALL(%s::bigint[])
"""
COUNT_FIELDS = ("rows_read", "rows_inserted", "rows_duplicates", "rows_updated", "rows_rejected", "rows_changed")


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


@dataclass(frozen=True, slots=True)
class GroupResult:
    """The files written (each with its counts) and those that could not be read,
    with what reading them raised: the caller retries or dead-letters each of those."""

    results: list[FileResult]
    failed: dict[int, BaseException]


def fingerprint(path: Path) -> tuple[int, str, bytes | None]:
    """(size, sha256) of a file, and its bytes when it is small (one read of 64 KiB held it
    whole): the parser reads those rather than open the file again (a one-row file of the hourly
    run: its open was a third of its reading), and reads the very bytes the fingerprint is of.
    Then 1 MiB blocks (a read of 1 MiB allocates its whole buffer first: for a one-row file
    that was most of the fingerprint's cost). A buffered read returns less than asked only at
    the end of the file."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        # a first read of what the file holds (and a byte more: the end is then seen at once),
        # rather than of a 64 KiB buffer for a file of a hundred bytes
        wanted = min(64 * 1024, os.fstat(handle.fileno()).st_size + 1)
        while block := handle.read(wanted):
            size += len(block)
            digest.update(block)
            if len(block) < wanted:
                break
            wanted = 1 << 20
    small = block if size == len(block) else None  # the first read, whole
    return size, digest.hexdigest(), small


@dataclass(slots=True)
class _Entry:
    """One staged file on its way into market_data (what the write phase learns about it)."""

    staged: StagedFile
    market: str  # the venue code market_data holds
    link: SymbolLink | None
    round: int = 0
    repeated: int = 0  # rows repeating an earlier row's timestamp (rejected in the write phase)
    inserted: int = 0
    updated: int = 0
    changed: int = 0  # stored rows whose values differ from the file's

    @property
    def file_id(self) -> int:
        return self.staged.file.id

    @property
    def live(self) -> int:
        """Rows left to write once repeats are out."""
        return self.staged.accepted - self.repeated

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.staged.ticker, self.market, self.staged.timeframe)


@dataclass(slots=True)
class _Group:
    """A group's files between the read and the write phase."""

    prints: dict[int, tuple[int, str]] = field(default_factory=dict)  # file id -> (size, sha256)
    contents: dict[int, bytes] = field(default_factory=dict)  # file id -> its bytes (small files)
    skipped: list[ImportFile] = field(default_factory=list)
    staged: list[StagedFile] = field(default_factory=list)
    failed: dict[int, BaseException] = field(default_factory=dict)
    bytes_by_job: dict[int, int] = field(default_factory=dict)  # read since the last progress update


def files_load(
    *, files: Sequence[ImportFile], batch_size: int = 50_000, on_batch: Callable[[int], None] | None = None
) -> GroupResult:
    """Read, validate and load a group of claimed files (`file.job` loaded): skip
    those unchanged since a successful import, stage the others, give their candles
    their symbols, then write them all, with each file's counts and status and
    its jobs' counters, in one transaction. A file that cannot be read is returned
    in `failed` and the others are written. Raises `Cancelled` and database errors
    (they concern the whole group: the caller retries it, or splits it)."""
    started = time.monotonic()
    cur = raw_cursor()
    group = _read_phase(cur, files, batch_size=batch_size, on_batch=on_batch)
    entries = _entries(group.staged)
    read_seconds = time.monotonic() - started
    with transaction.atomic():
        _write(cur, entries)
        write_seconds = time.monotonic() - started - read_seconds
        results = _finish(cur, group, entries, write_seconds=write_seconds)
        cur.execute(STAGE_TRUNCATE)
        _count_metrics(results)  # counted with the rows they count
    for entry in entries:
        log.info(
            "%s: %s rows, read+stage %.2fs, write %.2fs (group of %s)",
            entry.staged.file.relpath,
            entry.staged.accepted + entry.staged.rejected,
            entry.staged.seconds,
            write_seconds,
            len(files),
        )
    return GroupResult(results=results, failed=group.failed)


def file_load(
    *, import_file: ImportFile, job, batch_size: int = 50_000, on_batch: Callable[[int], None] | None = None
) -> FileResult:
    """One claimed file on its own (a group of one): its result, or what reading it raised."""
    import_file.job = job
    loaded = files_load(files=[import_file], batch_size=batch_size, on_batch=on_batch)
    if import_file.id in loaded.failed:
        raise loaded.failed[import_file.id]
    return loaded.results[0]


def _read_phase(cur, files: Sequence[ImportFile], *, batch_size: int, on_batch) -> _Group:
    """Fingerprint every file, skip the unchanged ones, stage the others."""
    group = _Group()
    root = data_root()  # this host's mount point of the share
    paths = {f.id: root / f.relpath for f in files}
    for import_file in files:
        try:
            size, digest, content = fingerprint(paths[import_file.id])
        except FILE_ERRORS as exc:
            group.failed[import_file.id] = exc
            continue
        group.prints[import_file.id] = (size, digest)
        if content is not None:
            group.contents[import_file.id] = content
    readable = [f for f in files if f.id in group.prints]
    unchanged = _unchanged_since_success([f for f in readable if not f.job.overwrite], group.prints)
    group.skipped = [f for f in readable if f.id in unchanged]
    stager = GroupStager(cur, files=readable, batch_size=batch_size, on_batch=on_batch)
    for import_file in readable:
        if import_file.id in unchanged:
            continue
        try:
            content = group.contents.pop(import_file.id, None)
            group.staged.append(stager.stage(import_file, paths[import_file.id], content=content))
        except FILE_ERRORS as exc:
            group.failed[import_file.id] = exc
    stager.close()
    group.bytes_by_job = stager.bytes_by_job
    return group


def _unchanged_since_success(files: Sequence[ImportFile], prints: dict[int, tuple[int, str]]) -> set[int]:
    """The files whose path, size and hash match an earlier succeeded import (one indexed read)."""
    if not files:
        return set()
    with raw_cursor() as cur:
        cur.execute(
            UNCHANGED_SQL,
            [
                text_array(f.relpath for f in files),
                int_array(prints[f.id][0] for f in files),
                text_array(prints[f.id][1] for f in files),
                int_array(f.id for f in files),
            ],
        )
        found = set(cur.fetchall())
    return {f.id for f in files if (f.relpath, *prints[f.id]) in found}


def _entries(staged: Sequence[StagedFile]) -> list[_Entry]:
    """Each staged file with its venue, its symbol (created if missing, through the
    symbol sync's service) and its round: files of one series go in successive
    rounds, in claim order, so each sees the rows of the one before it as a
    one-at-a-time load would."""
    pairs = {(s.ticker, market_spec(s.file.market).venue) for s in staged if s.accepted}
    links = symbols_ensure(pairs=sorted(pairs)).links if pairs else {}
    entries, seen = [], Counter()
    for s in staged:
        venue = market_spec(s.file.market).venue
        entry = _Entry(staged=s, market=venue, link=links.get((s.ticker, venue)))
        entry.round = seen[entry.key]
        seen[entry.key] += 1
        entries.append(entry)
    return entries


# ---------------------------------------------------------------- the write phase


def _write(cur, entries: list[_Entry]) -> None:
    """Inside the group's transaction: reject repeated timestamps, then round by
    round insert the new rows, count (and with `overwrite` rewrite) the changed ones."""
    if not entries:
        return
    _fill_files_table(cur, entries)
    partitions_ensure_from(table="market_data", source="import_stage_rows")  # an old history file's years
    _reject_repeats(cur, [e for e in entries if not e.staged.monotonic and e.staged.accepted])
    for number in sorted({e.round for e in entries}):
        live = [e for e in entries if e.round == number and e.live]
        if live:
            _insert(cur, live)
            _changed(cur, [e for e in live if e.live > e.inserted])


def _fill_files_table(cur, entries: list[_Entry]) -> None:
    cur.execute(FILES_DDL)
    cur.execute(FILES_TRUNCATE)
    columns: list[list] = [[] for _ in range(9)]
    for e in entries:
        s, link = e.staged, e.link
        asset_class = link.asset_class if link is not None and link.asset_class else s.file.market
        span = s.span or (None, None)
        row = (
            e.file_id,
            s.file.job_id,
            s.ticker,
            e.market,
            s.timeframe,
            asset_class,
            link.symbol_id if link is not None else None,
            *span,
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    kinds = (int_array, int_array, *[text_array] * 4, array_literal, array_literal, array_literal)
    cur.execute(FILES_FILL, [kind(column) for kind, column in zip(kinds, columns, strict=True)])


def _reject_repeats(cur, entries: list[_Entry]) -> None:
    """Later rows with the timestamp of an earlier row of their file leave the stage as rejects."""
    if not entries:
        return
    cur.execute(DEDUPE_SQL, {"files": int_array(e.file_id for e in entries)})
    by_file: dict[int, list[tuple[int, int]]] = {}
    for file_id, line, first in cur.fetchall():
        by_file.setdefault(file_id, []).append((line, first))
    now = timezone.now()
    rows = []
    for e in entries:
        repeated = by_file.get(e.file_id, [])
        e.repeated = len(repeated)
        if repeated:
            raw = _raw_lines(e.staged.path, {line for line, _ in repeated})
            for line, first in repeated:
                reject = Reject(line, raw.get(line, ""), f"duplicate: same timestamp as line {first}", "ts")
                rows.append(reject_row(e.staged.file, reject, now))
    write_rejects(cur, rows)


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


def _insert(cur, entries: list[_Entry]) -> None:
    """Insert the staged rows of one round's files; each file's count of new rows.

    `INSERT … ON CONFLICT` pays for speculative insertion on every row (about
    1.5x a plain INSERT here, see docs/import.md). So the files of which no stored
    candle of their series falls in the file's time range (a first import: one
    index probe each, in one statement) go in by a plain INSERT … SELECT, in a
    savepoint; if another worker stored the same candles meanwhile, the unique key
    refuses it and they take the ON CONFLICT statement with the others."""
    probe = [e for e in entries if e.staged.monotonic and e.staged.span]
    overlapping = _overlapping(cur, probe) if probe else set()
    fresh = [e for e in probe if e.file_id not in overlapping]
    if fresh:
        try:
            with transaction.atomic():
                cur.execute(INSERT_FRESH_SQL, {"files": int_array(e.file_id for e in fresh)})
            for e in fresh:
                e.inserted = e.live
        except psycopg.errors.UniqueViolation:
            fresh = []
    fresh_ids = {e.file_id for e in fresh}
    rest = [e for e in entries if e.file_id not in fresh_ids]
    if len(rest) == 1:
        cur.execute(INSERT_SQL, {"files": int_array([rest[0].file_id])})
        rest[0].inserted = cur.rowcount
    elif rest:
        cur.execute(INSERT_COUNTED_SQL, {"files": int_array(e.file_id for e in rest)})
        counted = {(t, m, tf): n for t, m, tf, n in cur.fetchall()}
        for e in rest:
            e.inserted = counted.get(e.key, 0)


def _overlapping(cur, entries: list[_Entry]) -> set[int]:
    """The files some of whose series' stored candles fall within their time range."""
    cur.execute(OVERLAP_SQL, {"files": int_array(e.file_id for e in entries)})
    return {file_id for (file_id,) in cur.fetchall()}


def _changed(cur, entries: list[_Entry]) -> None:
    """Count the stored rows whose values differ from the file's; with `overwrite`
    rewrite them and record it in the audit trail, one entry per file."""
    if not entries:
        return
    cur.execute(CHANGED_COUNT_SQL, {"files": int_array(e.file_id for e in entries)})
    changed = dict(cur.fetchall())
    for e in entries:
        e.changed = changed.get(e.file_id, 0)
    over = [e for e in entries if e.changed and e.staged.file.job.overwrite]
    if not over:
        return
    params = {"files": int_array(e.file_id for e in over)}
    cur.execute(CHANGED_SAMPLE_SQL, params)
    samples: dict[int, list[dict]] = {}
    for row in cur.fetchall():
        samples.setdefault(row[0], []).append(_describe_change(row[1:]))
    cur.execute(OVERWRITE_SQL, params)
    updated = dict(cur.fetchall())
    audit = []
    for e in over:
        e.updated = updated.get(e.file_id, 0)
        job = e.staged.file.job
        audit.append(
            DataCorrection(
                kind="import_overwrite",
                run_ref=f"import:{job.id}",
                table_name="market_data",
                ticker=e.staged.ticker,
                market=e.market,
                field=",".join(VALUE_COLUMNS),
                row_count=e.updated,
                detail={"file": e.staged.file.relpath, "timeframe": e.staged.timeframe, "sample": samples[e.file_id]},
                created_by=job.requested_by,
            )
        )
    DataCorrection.objects.bulk_create(audit)


def _describe_change(row) -> dict:
    n = len(VALUE_COLUMNS)
    old, new = row[1 : 1 + n], row[1 + n :]
    return {
        "ts": row[0].isoformat(),
        "old": {c: str(v) for c, v in zip(VALUE_COLUMNS, old, strict=True)},
        "new": {c: str(v) for c, v in zip(VALUE_COLUMNS, new, strict=True)},
    }


# ---------------------------------------------------------------- outcomes


def _counts(entry: _Entry) -> dict[str, int]:
    s = entry.staged
    return {
        "rows_read": s.accepted + s.rejected,
        "rows_inserted": entry.inserted,
        "rows_duplicates": entry.live - entry.inserted - entry.updated,
        "rows_updated": entry.updated,
        "rows_rejected": s.rejected + entry.repeated,
        "rows_changed": entry.changed - entry.updated,
    }


def _finish(cur, group: _Group, entries: list[_Entry], *, write_seconds: float) -> list[FileResult]:
    """Record every file's outcome and add it to its job (and the parent), in the
    group's transaction, so a job's counts always equal the sum of its files'."""
    share = write_seconds / max(1, len(entries))
    results = [
        FileResult(file_id=e.file_id, status=ImportStatus.SUCCEEDED, seconds=e.staged.seconds + share, **_counts(e))
        for e in entries
    ]
    results += [FileResult(file_id=f.id, status=ImportStatus.SKIPPED) for f in group.skipped]
    if not results:
        return results
    files = {e.file_id: e.staged.file for e in entries} | {f.id: f for f in group.skipped}
    _files_finish(cur, results, files, group.prints, {e.file_id: e for e in entries})
    _jobs_finish(cur, results, files, group.prints, group.bytes_by_job)
    succeeded = [files[r.file_id] for r in results if r.status == ImportStatus.SUCCEEDED]
    if succeeded:
        cur.execute(EARLIER_REJECTS_SQL, [text_array(f.relpath for f in succeeded), int_array(f.id for f in succeeded)])
    return results


def _files_finish(cur, results: list[FileResult], files: dict, prints: dict, entries: dict[int, _Entry]) -> None:
    columns: list[list] = [[] for _ in range(15)]
    for r in results:
        entry = entries.get(r.file_id)
        read = entry is not None  # a skipped file keeps its layout and progress as they were
        row = (
            r.file_id,
            r.status,
            round(r.rows_per_second, 1) if read else None,
            *(getattr(r, name) for name in COUNT_FIELDS),
            *prints[r.file_id],
            entry.staged.layout if read else None,
            entry.staged.timeframe if read else None,
            entry.staged.ticker if read else None,
            r.rows_read if read else None,
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    # the element type of each column: ints and text take the faster forms
    kinds = (int_array, text_array, array_literal, *[int_array] * 7, *[text_array] * 4, array_literal)
    arrays = [kind(column) for kind, column in zip(kinds, columns, strict=True)]
    cur.execute(FILES_FINISH_SQL, [timezone.now(), *arrays, arrays[0]])


def _jobs_finish(cur, results: list[FileResult], files: dict, prints: dict, bytes_by_job: dict[int, int]) -> None:
    """Add the files' counts to their jobs (and the parent): rows, files done and
    skipped, and the bytes read since the last progress update (a skipped file's
    whole size: it counts as done)."""
    width = len(COUNT_FIELDS) + 3
    totals: dict[int, list[int]] = {job_id: [0] * (width - 1) + [n] for job_id, n in bytes_by_job.items()}
    for r in results:
        job = files[r.file_id].job
        skipped = r.status == ImportStatus.SKIPPED
        add = [getattr(r, name) for name in COUNT_FIELDS] + [1, int(skipped), prints[r.file_id][0] if skipped else 0]
        for job_id in (job.id, job.parent_id):
            if job_id is not None:
                totals[job_id] = [a + b for a, b in zip(totals.get(job_id, [0] * width), add, strict=True)]
    ids = sorted(totals)
    cur.execute(JOBS_LOCK_SQL, [int_array(ids)])  # the same order in every worker: no deadlock on a parent's row
    cur.execute(JOBS_FINISH_SQL, [int_array(ids), *(int_array(totals[i][n] for i in ids) for n in range(width))])


def _count_metrics(results: list[FileResult]) -> None:
    for status, n in Counter(r.status for r in results).items():
        metrics.import_files.labels(status=status).inc(n)
    for outcome in ("inserted", "duplicates", "updated", "rejected"):
        total = sum(getattr(r, f"rows_{outcome}") for r in results)
        if total:
            metrics.import_rows.labels(outcome=outcome).inc(total)
