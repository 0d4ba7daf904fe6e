"""Import jobs: create, start (in-process or on django-q2 workers), claim files,
retry with backoff, dead-letter, cancel, retry a job, finish and SLA."""

from __future__ import annotations

import contextvars
import csv
import logging
import os
import socket
import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.db import DataError, connection, transaction
from django.db.models import Count, F, Q
from django.utils import timezone
from django.utils.translation import gettext
from django_q.models import Schedule

from batchimport import metrics
from batchimport.markets import (
    ALL_MARKETS_SLA_MINUTES,
    FOLDERS_TEXT,
    KEYS_TEXT,
    MARKET_KEYS,
    market_named,
)
from batchimport.models import TERMINAL, ImportFile, ImportJob, ImportStatus, RejectedRow
from batchimport.parsing import FileFormatError, market_from_path, ticker_from_filename
from batchimport.services.concurrency import files_due, job_enqueue, worker_slot
from batchimport.services.loader import files_load
from batchimport.services.market_settings import all_markets_concurrency, market_import_defaults
from batchimport.services.paths import data_root, path_resolve, relative_to_root
from batchimport.services.staging import TICKER_LENGTH
from etl.alerts import run_failure_notify
from etl.errors import ConflictError, DomainError
from etl.locks import IMPORT_FILE, IMPORT_START, held_items, session_unlock_many, try_session_locks, xact_lock
from etl.logcontext import current_run, run_context
from etl.models import DeadLetter, status_word
from etl.progress import Cancelled
from etl.recovery import connection_reset, write_after_reconnect
from etl.sqlarrays import array_literal, int_array, text_array

log = logging.getLogger(__name__)

BACKOFF_CAP_MINUTES = 30
CSV_SUFFIXES = (".csv", ".txt")
# Errors that retrying cannot fix: straight to the dead-letter list. A missing
# file is not one of them: on a host whose share is not mounted (yet), or while
# the scraper rewrites the file, it is retried with backoff first.
# A row the database refuses (DataError: a value out of range, a NUL) fails the
# same way every time; so does text csv or the codec cannot read.
PERMANENT_ERRORS = (FileFormatError, IsADirectoryError, PermissionError, DataError, csv.Error, UnicodeError)
DEAD_LETTER_KIND = "import_file"
UNFINISHED = [status for status in ImportStatus if status not in TERMINAL]


@dataclass(frozen=True, slots=True)
class WorkResult:
    job_id: int
    worker: str
    files_processed: int
    rows_read: int


def backoff_minutes(attempt: int) -> int:
    """1, 2, 4, 8, 16, 30, 30 … minutes after the 1st, 2nd, 3rd … failure."""
    return min(2 ** max(0, attempt - 1), BACKOFF_CAP_MINUTES)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 100000}"


# ---------------------------------------------------------------- create


def market_key_parse(value: str) -> str:
    """The market key for a name an operator typed (key or folder, any case), or a DomainError."""
    spec = market_named(value)
    if spec is None:
        raise DomainError(
            gettext("unknown market %(market)s: use one of %(keys)s") % {"market": repr(value), "keys": KEYS_TEXT},
            code="unknown_market",
        )
    return spec.key


def _market_folders(root: Path) -> dict[str, Path]:
    """The market folders directly under `root`, in priority order."""
    found = {}
    if root.is_dir():
        for child in sorted(root.iterdir()):
            spec = market_named(child.name)
            if spec and child.is_dir() and spec.key not in found:
                found[spec.key] = child
    return {key: found[key] for key in MARKET_KEYS if key in found}


def _list_files(path: Path) -> tuple[list[Path], list[str]]:
    """CSV files below `path` (or `path` itself), and the ones refused because
    a symlink leads outside the data root."""
    root = data_root()
    if path.is_file():
        return [path], []
    files, refused = [], []
    # rglob does not descend into symlinked folders, so below the resolved folder only a file
    # that is itself a link can lead elsewhere: the others need no resolve (an lstat per part),
    # and, when the folder is inside the data root, no check of their parents either.
    # Sorted by their parts, the order of sorting the paths themselves, without a Python
    # comparison per pair (5,000 files: a third of the listing's time).
    base = path.resolve()
    inside = base == root or root in base.parents
    for candidate in sorted(base.rglob("*"), key=_path_parts):
        if candidate.suffix.lower() not in CSV_SUFFIXES:
            continue
        link = candidate.is_symlink()
        resolved = candidate.resolve() if link else candidate
        if (link or not inside) and root not in resolved.parents:
            refused.append(f"{candidate.name}: links outside the data root")
            continue
        if resolved.is_file():
            files.append(resolved)
    return files, refused


def _relpath(path: Path, root: Path, prefix: str) -> str:
    """`relative_to_root` for a listed file: a slice of its text when it lies below the root."""
    text = str(path)
    return text[len(prefix) :] if text.startswith(prefix) else relative_to_root(path, root=root)


def _path_parts(path: Path) -> tuple[str, ...]:
    return path.parts


def _size_or_none(path: Path) -> int | None:
    """The file's size; None when it vanished or cannot be read since it was
    listed (the worker then records why: retried when missing, dead-lettered when unreadable)."""
    try:
        return path.stat().st_size
    except OSError:
        return None


def _add_files(job: ImportJob, files: list[Path]) -> int:
    """The job's files as import_files rows (a path already there is left as it is); their bytes.
    One INSERT ... SELECT FROM unnest(): an array per column that varies by file (path, ticker,
    size), each passed as one array literal (etl.sqlarrays), and one parameter for each field the
    job gives every file or that keeps its default, rather than a model and thirty parameters per
    file (2,500 files, load 4: 0.09 s where bulk_create and a resolve of the data root per file
    took 0.30 s; arrays of every column, psycopg adapting each element: 0.12 ms a file)."""
    if not files:
        return 0
    root = data_root()  # resolved once, not once a file (an lstat per part of its path)
    prefix = str(root).rstrip(os.sep) + os.sep
    sizes = [_size_or_none(p) for p in files]
    varying = {
        "relpath": [_relpath(p, root, prefix) for p in files],
        "ticker": [ticker_from_filename(p.name)[:TICKER_LENGTH] for p in files],  # a longer one fails its file
        "size": sizes,
    }
    given = {"job_id": job.pk, "market": job.market, "priority": job.priority}
    now = timezone.now()
    names, values, arrays, params = [], [], [], []
    for f in (f for f in ImportFile._meta.concrete_fields if not f.primary_key):
        names.append(connection.ops.quote_name(f.column))
        if f.attname in varying:
            values.append(f"v.{f.column}")
            to_array = array_literal if f.attname == "size" else text_array  # a size may be None
            arrays.append((f"%s::{f.db_type(connection)}[]", f.column, to_array(varying[f.attname])))
            continue
        if f.attname in given:
            value = given[f.attname]
        else:
            value = now if getattr(f, "auto_now_add", False) else f.get_default()
        values.append(f"%s::{f.db_type(connection)}")
        params.append(f.get_db_prep_save(value, connection))
    source = ", ".join(a[0] for a in arrays)
    columns = ", ".join(a[1] for a in arrays)
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO import_files ({', '.join(names)}) SELECT {', '.join(values)}"  # noqa: S608 - the model's columns
            f" FROM unnest({source}) AS v({columns}) ON CONFLICT DO NOTHING",
            [*params, *(a[2] for a in arrays)],
        )
    return sum(size or 0 for size in sizes)


@transaction.atomic
def import_job_create(
    *,
    path: str,
    market: str | None = None,
    all_markets: bool = False,
    batch_size: int | None = None,
    overwrite: bool = False,
    run_in_parallel: bool = True,
    max_concurrency: int | None = None,
    max_attempts: int = 4,
    sla_minutes: int | None = None,
    requested_by: str = "",
    schedule_name: str = "",
) -> ImportJob:
    """An import job for a market folder (or a file), or an all-markets job with
    one child per market folder found; lists the files. Refuses paths outside
    DATA_ROOT and folders whose market cannot be told. What the request leaves
    out (None) comes from each market's import settings (market_settings)."""
    resolved = path_resolve(path=path)
    if batch_size is not None and batch_size < 1:
        raise DomainError(gettext("batch size must be at least 1"), code="invalid_batch_size")
    xact_lock(IMPORT_START)  # until commit: two requests for one folder see each other's job
    _refuse_overlapping(relative_to_root(resolved))
    common = {
        "batch_size": batch_size,
        "overwrite": overwrite,
        "max_attempts": max(1, max_attempts),
        "requested_by": requested_by,
        "schedule_name": schedule_name,
    }
    folders = _market_folders(resolved) if not market else {}
    if market or not (all_markets or folders):
        key = market_key_parse(market) if market else market_from_path(resolved / "x")
        if not key:
            raise DomainError(
                gettext("cannot tell the market of %(path)s: name a market (%(keys)s) or use a folder named after one")
                % {"path": repr(relative_to_root(resolved)), "keys": KEYS_TEXT},
                code="market_unknown",
            )
        return _market_job(
            resolved, key, sla_minutes=sla_minutes, max_concurrency=max_concurrency, parent=None, **common
        )
    if not folders:
        raise DomainError(
            gettext("%(path)s has no %(folders)s folder")
            % {"path": repr(relative_to_root(resolved)), "folders": FOLDERS_TEXT},
            code="no_market_folders",
        )
    parent = ImportJob.objects.create(
        kind=ImportJob.Kind.ALL_MARKETS,
        path=relative_to_root(resolved),
        run_in_parallel=run_in_parallel,
        sla_minutes=sla_minutes or ALL_MARKETS_SLA_MINUTES,
        **{**common, "batch_size": batch_size or settings.BATCH_SIZE_MARKET_DATA},
    )
    total_files = total_bytes = 0
    refused = []  # shown on the parent too: it is the job an operator looks at
    concurrencies = []
    for key, folder in folders.items():
        child = _market_job(folder, key, sla_minutes=None, max_concurrency=None, parent=parent, **common)
        total_files += child.files_total
        total_bytes += child.progress_total or 0
        concurrencies.append(child.max_concurrency)
        if child.error:
            refused.append(f"{key}: {child.error}")
    ImportJob.objects.filter(pk=parent.pk).update(
        files_total=total_files,
        progress_total=total_bytes,
        error="; ".join(refused),
        max_concurrency=max_concurrency or all_markets_concurrency(concurrencies, parallel=run_in_parallel),
    )
    parent.refresh_from_db()
    return parent


def _overlaps(first: str, second: str) -> bool:
    """One path is the other or lies below it (paths relative to DATA_ROOT, '.' for the root)."""
    if "." in (first, second) or first == second:
        return True
    return first.startswith(second.rstrip("/") + "/") or second.startswith(first.rstrip("/") + "/")


def _refuse_overlapping(relpath: str) -> None:
    """A ConflictError naming the running job when one reads this folder (or one
    inside or around it): two imports of one folder would read every file twice.
    A job whose process died (files `running` that nobody reads) does not count."""
    for other in ImportJob.objects.exclude(status__in=TERMINAL).order_by("id"):
        if not _overlaps(relpath, other.path):
            continue
        root = other.parent or other
        if _dead_running_files(_family_ids(root)) and not _live_files(_family_ids(root)):
            continue
        raise ConflictError(
            gettext("import job %(job)s is already %(status)s on %(path)s; wait for it or cancel it")
            % {"job": root.pk, "status": status_word(root.status), "path": repr(other.path)},
            code="import_running",
        )


def _live_files(job_ids: list[int]) -> bool:
    """A file of these jobs is being read by a live process (its lock is held)."""
    running = ImportFile.objects.filter(job_id__in=job_ids, status=ImportStatus.RUNNING)
    running = list(running.values_list("pk", flat=True))
    return len(_readers_gone(running)) < len(running)


def _market_job(
    folder: Path,
    key: str,
    *,
    sla_minutes: int | None,
    max_concurrency: int | None,
    batch_size: int | None,
    parent: ImportJob | None,
    **common,
) -> ImportJob:
    files, refused = _list_files(folder)
    defaults = market_import_defaults(key)  # what the request left out
    job = ImportJob.objects.create(
        kind=ImportJob.Kind.MARKET,
        market=key,
        parent=parent,
        path=relative_to_root(folder),
        batch_size=batch_size or defaults.batch_size,
        max_concurrency=max_concurrency or defaults.max_concurrency,
        sla_minutes=sla_minutes or defaults.sla_minutes,
        expected_rows_per_second=defaults.expected_rows_per_second,
        priority=defaults.priority,
        files_total=len(files),
        error="; ".join(refused),
        **common,
    )
    job.progress_total = _add_files(job, files)
    ImportJob.objects.filter(pk=job.pk).update(progress_total=job.progress_total)
    return job


# ---------------------------------------------------------------- start and work


def import_job_start(
    *,
    job: ImportJob,
    workers: int = 1,
    queue: bool = False,
    alone: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> ImportJob:
    """Run the job on the django-q2 cluster(s) (`queue`: its `max_concurrency`
    tasks share it, batchimport.services.concurrency), or here, in `workers`
    threads. Each worker claims files until none is left. `alone`: no queued
    task works on the job (the caller just created it), so the threads here
    claim groups sized for themselves rather than leave shares for tasks that
    will not come (`group_limit`)."""
    workers = max(1, workers)
    if queue:
        transaction.on_commit(partial(job_enqueue, job.pk))
        return job
    sharing = workers if alone else None
    if workers == 1:
        import_job_work(job_id=job.pk, on_batch=on_batch, workers=sharing)
    else:
        _run_threads(job.pk, workers=workers, sharing=sharing, on_batch=on_batch)
    job.refresh_from_db()
    return job


def _run_threads(job_id: int, *, workers: int, sharing: int | None, on_batch: Callable[[int], None] | None) -> None:
    """`workers` threads share the job. Each runs in a copy of the caller's
    context, so the run context of the log lines (etl.logcontext) follows
    them: a new thread would otherwise start with none."""

    def run() -> None:
        try:
            import_job_work(job_id=job_id, on_batch=on_batch, workers=sharing)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(run,), name=f"import-{job_id}-{number}")
        for number in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def import_job_submit(
    *,
    queue: bool = True,
    workers: int | None = None,
    on_start: Callable[[ImportJob], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    **options: Any,
) -> ImportJob:
    """Create a job (`options` as `import_job_create` takes them) and start it:
    queued for the django-q2 workers once the transaction commits (`queue`), or
    run here in `workers` threads (default: the job's max_concurrency when
    queued, 1 here). `on_start` sees the job before its first file is read."""
    with transaction.atomic():
        job = import_job_create(**options)
        if queue:
            return import_job_start(job=job, workers=workers or job.max_concurrency, queue=True)
    if on_start is not None:
        on_start(job)
    # Created just now and queued nowhere: these threads are all its workers.
    return import_job_start(job=job, workers=workers or 1, alone=True, on_batch=on_batch)


def _job_family(job: ImportJob) -> list[ImportJob]:
    """The market jobs whose files a worker may claim, in priority order."""
    if job.kind == ImportJob.Kind.MARKET:
        return [job]
    children = sorted(job.children.all(), key=lambda child: (child.priority, child.pk))
    if job.run_in_parallel:
        return children
    # in priority order: only the first market that still has work
    for child in children:
        if child.files.exclude(status__in=TERMINAL).exists():
            return [child]
    return []


# A group at a time (see files_claim). The orphan query has no limit: the
# `running` rows of live workers come first and are passed over by their locks.
# Each job of the family is read by its own ordered scan of the (job, status, priority, id)
# index, which stops after `limit` rows: `job_id = ANY(…) … ORDER BY priority, id` sorted every
# queued file of the job for each group (a claim cost that grew with the job: 12 ms a group at
# 100,000 files, quadratic over the job).
_CLAIM_SQL = """
SELECT f.id, f.size FROM unnest(%s::bigint[]) AS j(id)
CROSS JOIN LATERAL (
    SELECT id, coalesce(size, 0) AS size, priority FROM import_files
    WHERE job_id = j.id AND status = '{status}' {ready}
    ORDER BY priority, id
    LIMIT %s
    FOR UPDATE SKIP LOCKED
) f
ORDER BY f.priority, f.id
LIMIT %s
"""
CLAIM_QUEUED_SQL = _CLAIM_SQL.format(status="queued", ready="AND (next_attempt_at IS NULL OR next_attempt_at <= now())")
CLAIM_ORPHAN_SQL = _CLAIM_SQL.format(status="running", ready="")


def group_limit(*, job: ImportJob, workers: int | None = None) -> int:
    """How many files a worker claims at once: IMPORT_GROUP_FILES, but, when the job
    runs on several workers, no more than a share of what is left (the files still
    to do over twice the workers), so the others get files too. `workers`: how many
    work on the job when the caller knows (all in this process); else its
    `max_concurrency`, as many as the queue may run."""
    remaining = max(1, job.files_total - job.files_done)
    workers = max(1, job.max_concurrency if workers is None else workers)
    share = remaining if workers == 1 else -(-remaining // (2 * workers))
    return max(1, min(settings.IMPORT_GROUP_FILES, share))


def _within_budget(candidates: list[tuple[int, int]], limit: int) -> list[int]:
    """The first candidates (id, size) up to `limit` files and IMPORT_GROUP_BYTES (always at least one)."""
    chosen, total = [], 0
    for file_id, size in candidates:
        if chosen and (len(chosen) >= limit or total + size > settings.IMPORT_GROUP_BYTES):
            break
        chosen.append(file_id)
        total += size
    return chosen


def files_claim(*, job: ImportJob, worker: str, limit: int = 1) -> list[ImportFile]:
    """Claim the next files of the job, up to `limit` of them and IMPORT_GROUP_BYTES:
    queued ones first, else files left `running` by a dead worker. `FOR UPDATE SKIP
    LOCKED` keeps two workers off the same rows; the session advisory lock of each
    file (taken for the group in one statement) is held while it is read, so a file
    whose worker died (its session, and so its lock, gone) is claimed again, and one
    a live worker reads is not. Returns the files (with their job) in claim order."""
    family = _job_family(job)
    if not family:
        return []
    job_ids = [j.pk for j in family]
    with transaction.atomic(), connection.cursor() as cur:
        for sql, most in ((CLAIM_QUEUED_SQL, limit), (CLAIM_ORPHAN_SQL, None)):
            cur.execute(sql, [job_ids, most, most])
            candidates = cur.fetchall()
            locked = set(try_session_locks(IMPORT_FILE, [file_id for file_id, _ in candidates]))
            chosen = _within_budget([c for c in candidates if c[0] in locked], limit)
            session_unlock_many(IMPORT_FILE, sorted(locked - set(chosen)))
            if chosen:
                return _claimed(cur, chosen, worker=worker)
    return []


# The claimed rows come back from the claim's own UPDATE: no second read of them, and none of
# their timestamps, which Django's loader parses in Python (3 µs each; two a file). The ids travel
# as one array literal (etl.sqlarrays), not 500 parameters of an IN list (an `= ANY` of the
# primary key: index probes, whatever the number of files ever imported).
_UNREAD = ("created_at", "started_at", "finished_at", "next_attempt_at")
_CLAIM_RETURNS = [f.attname for f in ImportFile._meta.concrete_fields if f.attname not in _UNREAD]
_CLAIM_READ = frozenset(_CLAIM_RETURNS)
CLAIM_SQL = f"""
UPDATE import_files SET status = %s, attempts = attempts + 1, claimed_by = %s, started_at = %s, finished_at = NULL,
    progress_done = 0, progress_total = NULL
WHERE id = ANY(%s::bigint[])
RETURNING {", ".join(connection.ops.quote_name(ImportFile._meta.get_field(n).column) for n in _CLAIM_RETURNS)}
"""  # noqa: S608 - the model's own columns


def _claimed(cur, ids: list[int], *, worker: str) -> list[ImportFile]:
    """Mark the chosen files running (one UPDATE … RETURNING); the files, with their jobs, in
    claim order. Their creation and retry times are left unread (deferred: read on first use)."""
    now = timezone.now()
    cur.execute(CLAIM_SQL, [ImportStatus.RUNNING, worker[:100], now, int_array(ids)])
    # a set: from_db asks of each of the model's fields whether it was read
    files = [ImportFile.from_db(connection.alias, _CLAIM_READ, row) for row in cur.fetchall()]
    files.sort(key=lambda f: (f.priority, f.id))
    # Their jobs read afresh, as select_related did, but one object per job rather than
    # a copy per file (that read took 3-6 ms of a 10-16 ms claim of 100 files).
    jobs = ImportJob.objects.in_bulk({f.job_id for f in files})
    for claimed in files:
        claimed.started_at, claimed.finished_at = now, None
        claimed.job = jobs[claimed.job_id]
    return files


def file_claim(*, job: ImportJob, worker: str) -> ImportFile | None:
    """Claim the next file of the job on its own (`files_claim` with a limit of one)."""
    claimed = files_claim(job=job, worker=worker, limit=1)
    return claimed[0] if claimed else None


def _release(file_ids: list[int]) -> None:
    try:
        session_unlock_many(IMPORT_FILE, file_ids)
    except Exception:  # the session is gone, and the locks with it
        log.warning("could not release the locks of import files %s", file_ids, exc_info=True)


def _mark_started(job: ImportJob) -> None:
    now = timezone.now()
    ids = [job.pk, *job.children.values_list("pk", flat=True), *([job.parent_id] if job.parent_id else [])]
    ImportJob.objects.filter(pk__in=ids, status=ImportStatus.QUEUED).update(status=ImportStatus.RUNNING)
    ImportJob.objects.filter(pk__in=ids, started_at__isnull=True).update(started_at=now)


def import_job_work(
    *,
    job_id: int,
    worker: str | None = None,
    on_batch: Callable[[int], None] | None = None,
    max_files: int | None = None,
    workers: int | None = None,
) -> WorkResult:
    """One worker's loop: claim a group of files, load it, record every file's
    outcome, until no file of the job is left to claim (or `max_files` were done).
    Safe to run in many processes at once: it works only while it holds one of the
    job's `max_concurrency` worker slots (batchimport.services.concurrency).
    `workers`: how many work on the job in all, when the caller knows (`group_limit`)."""
    worker = worker or worker_name()
    job = ImportJob.objects.select_related("parent").get(pk=job_id)
    result = WorkResult(job_id=job_id, worker=worker, files_processed=0, rows_read=0)
    if job.status in TERMINAL:
        return result
    # a worker's task: its log lines name the import (under a pipeline run they keep naming the pipeline)
    scope = run_context("import", job_id) if current_run() is None else nullcontext()
    with scope:
        for _ in range(2):  # a second round for files that came due while this task held its slot
            with worker_slot(job) as slot:
                if slot is None:
                    break  # max_concurrency tasks are at work on this job already
                done = _work_loop(job, worker=worker, on_batch=on_batch, max_files=max_files, workers=workers)
            result = WorkResult(
                job_id, worker, result.files_processed + done.files_processed, result.rows_read + done.rows_read
            )
            if max_files is not None or not files_due(job):
                break
    return result


def _work_loop(
    job: ImportJob,
    *,
    worker: str,
    on_batch: Callable[[int], None] | None,
    max_files: int | None,
    workers: int | None,
) -> WorkResult:
    _mark_started(job)
    processed = rows = 0
    while True:
        job.refresh_from_db(fields=["cancel_requested", "status", "files_total", "files_done", "max_concurrency"])
        if job.cancel_requested or job.status in TERMINAL:
            break
        limit = group_limit(job=job, workers=workers)
        if max_files is not None:
            limit = min(limit, max_files - processed)
        claimed = files_claim(job=job, worker=worker, limit=limit)
        if not claimed:
            break
        try:
            rows += _process_group(claimed, on_batch=on_batch)
        finally:
            _release([f.pk for f in claimed])
        processed += len(claimed)
        for job_id in sorted({f.job_id for f in claimed}):
            job_finish(job_id=job_id)
        if max_files is not None and processed >= max_files:
            break
    job_finish(job_id=job.pk)
    return WorkResult(job_id=job.pk, worker=worker, files_processed=processed, rows_read=rows)


# A statement the database refuses for its data fails the same way every time:
# in a group, it is not known which file holds the row, so the files are loaded
# again one by one and only that file fails.
DATA_ERRORS = (DataError, psycopg.DataError)


def _process_group(files: list[ImportFile], *, on_batch) -> int:
    """Load a claimed group and record the outcome of each of its files; the rows read."""
    try:
        loaded = files_load(files=files, batch_size=files[0].job.batch_size, on_batch=on_batch)
    except Cancelled:
        for import_file in files:
            _file_stop(import_file, status=ImportStatus.CANCELLED, error="cancelled by an operator")
        return 0
    except DATA_ERRORS as exc:
        if len(files) > 1:
            log.warning("a group of %s import files hit %r: loading them one by one", len(files), exc)
            return sum(_process_group([f], on_batch=on_batch) for f in files)
        _dead_letter(files[0], error=_error_text(exc))
        return 0
    except Exception as exc:  # anything else may be passing (database, disk): retry later
        log.exception("import of %s file(s) failed (%s ...)", len(files), files[0].relpath)
        connection_reset()  # a broken session: the next query opens a new one (its locks died with it)
        what = f"the failure of {len(files)} import file(s)"
        write_after_reconnect(partial(_files_retry, files, exc), what=what)
        return 0
    by_id = {f.pk: f for f in files}
    for file_id, exc in loaded.failed.items():
        _file_failed(by_id[file_id], exc)
    return sum(result.rows_read for result in loaded.results)


def _file_failed(import_file: ImportFile, exc: BaseException) -> None:
    """A file that could not be read: dead-lettered when retrying cannot help, else retried."""
    if isinstance(exc, PERMANENT_ERRORS):
        _dead_letter(import_file, error=_error_text(exc))
    else:
        log.warning("import file %s failed (attempt %s): %s", import_file.relpath, import_file.attempts, exc)
        _files_retry([import_file], exc)


@transaction.atomic
def _files_retry(files: list[ImportFile], exc: BaseException) -> None:
    """Retry each file with backoff, or dead-letter it after its last attempt; one
    wake-up schedule per job and delay."""
    wakes = set()
    for import_file in files:
        if import_file.attempts >= import_file.job.max_attempts:
            _dead_letter(import_file, error=f"gave up after {import_file.attempts} attempts: {_error_text(exc)}")
            continue
        when = _schedule_retry(import_file, error=_error_text(exc))
        wakes.add((import_file.job.parent_id or import_file.job_id, when))
    for root_id, when in sorted(wakes):
        transaction.on_commit(partial(_schedule_work_at, root_id, when))


def _readers_gone(file_ids: list[int]) -> list[int]:
    """The files no session (this one included) holds the lock of: the process that
    was reading each has died, and PostgreSQL released its locks with its session."""
    held = held_items(IMPORT_FILE, file_ids)
    return [pk for pk in file_ids if pk not in held]


def _dead_running_files(job_ids: list[int]) -> list[int]:
    """The `running` files of these jobs whose reader died (rows being claimed right now are skipped)."""
    running = ImportFile.objects.select_for_update(skip_locked=True).filter(
        job_id__in=job_ids, status=ImportStatus.RUNNING
    )
    return _readers_gone(list(running.values_list("pk", flat=True)))


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror or exc}: {exc.filename}"
    return str(exc) or type(exc).__name__


def _file_stop(import_file: ImportFile, *, status: str, error: str, **extra) -> None:
    """A file that ends without loading: its partial rejects go (its counts stay zero)."""
    with transaction.atomic():
        RejectedRow.objects.filter(file=import_file).delete()
        ImportFile.objects.filter(pk=import_file.pk).update(
            status=status, error=error[:2000], finished_at=timezone.now(), **extra
        )
    metrics.import_files.labels(status="retry_scheduled" if status == ImportStatus.QUEUED else status).inc()


def _dead_letter(import_file: ImportFile, *, error: str) -> None:
    with transaction.atomic():
        _file_stop(import_file, status=ImportStatus.DEAD_LETTERED, error=error)
        DeadLetter.objects.create(
            kind=DEAD_LETTER_KIND,
            ref=import_file.relpath[:200],
            payload={"file_id": import_file.pk, "job_id": import_file.job_id, "market": import_file.market},
            error=error,
            attempts=import_file.attempts,
        )


def _schedule_retry(import_file: ImportFile, *, error: str) -> datetime:
    """Put the file back in the queue for when its backoff ends; that moment (the caller wakes a worker then)."""
    when = _due(import_file.attempts)
    _file_stop(
        import_file, status=ImportStatus.QUEUED, error=f"attempt {import_file.attempts}: {error}", next_attempt_at=when
    )
    return when


def _due(attempt: int) -> datetime:
    """When a file failed at this attempt is due again: now + its backoff, to the second
    (files of a group that failed together share one wake-up)."""
    return (timezone.now() + timedelta(minutes=backoff_minutes(attempt))).replace(microsecond=0)


def _schedule_work_at(job_id: int, when) -> None:
    """A one-off django-q2 schedule wakes a worker when the retry is due."""
    Schedule.objects.create(
        name=f"import-retry-{job_id}-{when:%Y%m%d%H%M%S%f}",
        func="batchimport.tasks.import_job_work",
        args=repr(job_id),
        schedule_type=Schedule.ONCE,
        next_run=when,
        repeats=-1,
    )


# ---------------------------------------------------------------- finish, SLA


def job_finish(*, job_id: int) -> ImportJob:
    """Close the job when all its files (or child jobs) are done: status, finish
    time, rate and SLA breach. Then its parent. Idempotent."""
    job = ImportJob.objects.get(pk=job_id)
    if job.status in TERMINAL:
        return job
    if job.kind == ImportJob.Kind.ALL_MARKETS:
        items = job.children.all()
    else:
        items = job.files.all()
    # One probe of the (job, status) index while work is left: a worker calls this after every group.
    if items.filter(status__in=UNFINISHED).exists():
        return job
    tally = dict(items.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    dead = tally.get(ImportStatus.DEAD_LETTERED, 0) + tally.get(ImportStatus.FAILED, 0)
    cancelled = tally.get(ImportStatus.CANCELLED, 0)
    if job.cancel_requested or cancelled:
        status, error = ImportStatus.CANCELLED, "cancelled by an operator"
    elif dead:
        what = "market job(s)" if job.kind == ImportJob.Kind.ALL_MARKETS else "file(s)"
        headline = f"{dead} {what} failed or dead-lettered"
        status, error = ImportStatus.FAILED, f"{headline}: {_failures_text(job)}"
    else:
        status, error = ImportStatus.SUCCEEDED, job.error
    now = timezone.now()
    started = job.started_at or now
    seconds = max((now - started).total_seconds(), 1e-6)
    breached = job.sla_breached or now - started > timedelta(minutes=job.sla_minutes)
    if job.kind == ImportJob.Kind.ALL_MARKETS:
        files_failed = sum(job.children.values_list("files_failed", flat=True))
    else:
        files_failed = dead + cancelled
    finished = (
        ImportJob.objects.filter(pk=job.pk)
        .exclude(status__in=TERMINAL)
        .update(
            status=status,
            files_failed=files_failed,
            finished_at=now,
            started_at=started,
            error=error,
            sla_breached=breached,
            rate_per_second=round(job.rows_read / seconds, 1),
            progress_done=F("progress_total"),
        )
    )
    if finished and status == ImportStatus.FAILED:  # once: only the call that finished the job alerts
        run_failure_notify(
            kind="import", run_id=job.pk, summary=f"Import job #{job.pk} ({job.market or job.kind}) failed: {headline}"
        )
    if job.parent_id:
        job_finish(job_id=job.parent_id)
    job.refresh_from_db()
    return job


@dataclass(frozen=True, slots=True)
class FileFailure:
    relpath: str
    status: str
    error: str


FAILURES_NAMED = 20  # in a job's error text; the files list has them all


def job_failures(*, job: ImportJob) -> list[FileFailure]:
    """Every file of the job (and its children) that failed or was dead-lettered, with its reason."""
    files = ImportFile.objects.filter(
        Q(job=job) | Q(job__parent=job), status__in=[ImportStatus.FAILED, ImportStatus.DEAD_LETTERED]
    ).order_by("relpath")
    return [FileFailure(relpath=f.relpath, status=f.status, error=f.error) for f in files]


def _failures_text(job: ImportJob) -> str:
    """Each failed file and why (the first FAILURES_NAMED), and what a market job refused."""
    failures = job_failures(job=job)
    parts = [f"{f.relpath} ({f.error or f.status})" for f in failures[:FAILURES_NAMED]]
    if len(failures) > FAILURES_NAMED:
        parts.append(f"and {len(failures) - FAILURES_NAMED} more")
    if job.kind == ImportJob.Kind.ALL_MARKETS:
        parts += [f"{child.market}: {child.error}" for child in job.children.all() if child.error and not failures]
    return "; ".join(parts) or "see the job's files"


def sla_check(*, now=None) -> int:
    """Flag running jobs past their SLA; returns how many were newly flagged."""
    now = now or timezone.now()
    flagged = 0
    for job in ImportJob.objects.filter(status=ImportStatus.RUNNING, sla_breached=False, started_at__isnull=False):
        if now > job.started_at + timedelta(minutes=job.sla_minutes):
            flagged += ImportJob.objects.filter(pk=job.pk, sla_breached=False).update(sla_breached=True)
    return flagged


# ---------------------------------------------------------------- cancel, retry, resubmit


def _family_ids(job: ImportJob) -> list[int]:
    return [job.pk, *job.children.values_list("pk", flat=True)]


@transaction.atomic
def import_job_cancel(*, job: ImportJob) -> ImportJob:
    """Ask the job to stop: queued files are cancelled now, files being read
    stop after their current batch."""
    if job.status in TERMINAL:
        raise ConflictError(
            gettext("import job %(job)s has already ended (%(status)s)")
            % {"job": job.pk, "status": status_word(job.status)}
        )
    ids = _family_ids(job)
    ImportJob.objects.filter(pk__in=ids).update(cancel_requested=True)
    files = ImportFile.objects.filter(job_id__in=ids)
    # a file whose reader died stops now: nobody is left to see the request
    dead = _dead_running_files(ids)
    RejectedRow.objects.filter(file_id__in=dead).delete()
    files.filter(pk__in=dead, status=ImportStatus.RUNNING).update(
        status=ImportStatus.CANCELLED,
        finished_at=timezone.now(),
        error="cancelled by an operator (the process reading it had stopped)",
    )
    files.filter(status=ImportStatus.RUNNING).update(cancel_requested=True)
    files.filter(status=ImportStatus.QUEUED).update(
        status=ImportStatus.CANCELLED, finished_at=timezone.now(), error="cancelled by an operator"
    )
    for child_id in ids[1:]:
        job_finish(job_id=child_id)
    return job_finish(job_id=job.pk)


@transaction.atomic
def import_job_retry(
    *, job: ImportJob, max_attempts: int | None = None, workers: int = 1, queue: bool = True
) -> ImportJob:
    """Queue again the files of an ended job that did not succeed (failed,
    dead-lettered, cancelled), as a new attempt of the same job. A job whose
    process died (a killed command: files `running` that nobody reads) counts
    as ended: those files and the ones still queued are taken up again."""
    ids = _family_ids(job)
    dead = _dead_running_files(ids) if job.status not in TERMINAL else []
    if job.status not in TERMINAL and not dead:
        raise ConflictError(
            gettext("import job %(job)s is still %(status)s; cancel it or wait")
            % {"job": job.pk, "status": status_word(job.status)}
        )
    stopped = [ImportStatus.FAILED, ImportStatus.DEAD_LETTERED, ImportStatus.CANCELLED]
    files = ImportFile.objects.filter(Q(pk__in=dead) | Q(status__in=stopped), job_id__in=ids)
    file_ids = list(files.values_list("pk", flat=True))
    if not file_ids:
        raise ConflictError(
            gettext("import job %(job)s has no failed, dead-lettered or cancelled file to retry") % {"job": job.pk}
        )
    _requeue(file_ids)
    update = {"attempt": F("attempt") + 1}
    if max_attempts:
        update["max_attempts"] = max_attempts
    ImportJob.objects.filter(pk__in=ids).update(**update)
    job.refresh_from_db()
    return import_job_start(job=job, workers=workers, queue=queue)


def _requeue(file_ids: list[int]) -> None:
    """Put files back in the queue and reopen their jobs (and the parent)."""
    files = ImportFile.objects.filter(pk__in=file_ids)
    job_ids = set(files.values_list("job_id", flat=True))
    job_ids |= set(ImportJob.objects.filter(pk__in=job_ids, parent__isnull=False).values_list("parent_id", flat=True))
    files.update(
        status=ImportStatus.QUEUED,
        attempts=0,
        next_attempt_at=None,
        cancel_requested=False,
        error="",
        finished_at=None,
    )
    ImportJob.objects.filter(pk__in=job_ids).update(
        status=ImportStatus.RUNNING,
        finished_at=None,
        cancel_requested=False,
        error="",
        sla_breached=False,
        started_at=timezone.now(),
        files_failed=0,
    )
    DeadLetter.objects.filter(
        kind=DEAD_LETTER_KIND, payload__file_id__in=file_ids, resolved_at__isnull=True, resubmitted_at__isnull=True
    ).update(resubmitted_at=timezone.now())


@transaction.atomic
def dead_letter_resubmit(*, dead_letter: DeadLetter, queue: bool = True) -> ImportJob:
    """Queue the dead-lettered file again in its job."""
    if dead_letter.kind != DEAD_LETTER_KIND:
        raise DomainError(
            gettext("dead letter %(letter)s is not an import file (%(kind)s)")
            % {"letter": dead_letter.pk, "kind": dead_letter.kind}
        )
    if dead_letter.resubmitted_at or dead_letter.resolved_at:
        raise ConflictError(
            gettext("dead letter %(letter)s was already resubmitted or resolved") % {"letter": dead_letter.pk}
        )
    file_id = dead_letter.payload.get("file_id")
    import_file = ImportFile.objects.select_related("job").filter(pk=file_id).first()
    if import_file is None:
        raise DomainError(
            gettext("dead letter %(letter)s: import file %(file)s no longer exists")
            % {"letter": dead_letter.pk, "file": file_id}
        )
    if import_file.status != ImportStatus.DEAD_LETTERED:
        raise ConflictError(
            gettext("import file %(file)s is %(status)s, not dead-lettered")
            % {"file": file_id, "status": status_word(import_file.status)}
        )
    _requeue([import_file.pk])
    root = import_file.job.parent or import_file.job
    root.refresh_from_db()
    return import_job_start(job=root, queue=queue)


def running_import_exists(*, schedule_name: str = "") -> bool:
    """Is an import (of this schedule, or any when blank) queued or running?"""
    q = Q(status__in=[ImportStatus.QUEUED, ImportStatus.RUNNING], parent__isnull=True)
    if schedule_name:
        q &= Q(schedule_name=schedule_name)
    return ImportJob.objects.filter(q).exists()
