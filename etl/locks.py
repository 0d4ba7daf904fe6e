"""Every PostgreSQL advisory lock the project takes, in one registry.

A lock is named by two 32-bit integers, ``(namespace, item)``: the namespace
says what kind of thing is guarded, the item which one (0 for a lock with a
single instance, an id, or a CRC-32 of a text key). Modules never write
``pg_advisory_*`` themselves: they take an ``AdvisoryLock`` from here, so two
modules can never pick the same number for different things, and an operator
reading ``pg_locks`` can look the namespace up in ``LOCKS``.

Scope matters under a connection pooler. Transaction-level locks
(``pg_advisory_xact_lock``) work behind PgBouncer in any pool mode. Session-level
locks are held across transactions on one server connection, so they need
PgBouncer's ``pool_mode = session`` (or a direct connection) for the connection
that takes them; each such lock says why it must outlive a transaction.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import InterfaceError, OperationalError, connection

from etl.sqlarrays import int_array


class LockScope(enum.StrEnum):
    TRANSACTION = "transaction"
    SESSION = "session"


@dataclass(frozen=True, slots=True)
class AdvisoryLock:
    name: str
    namespace: int
    scope: LockScope
    guards: str

    def key(self, item: int | str = 0) -> tuple[int, int]:
        """The two int4 arguments of pg_advisory_*(int, int) for this item."""
        if isinstance(item, str):
            item = zlib.crc32(item.encode()) - 2**31
        if not -(2**31) <= item < 2**31:
            item = zlib.crc32(str(item).encode()) - 2**31
        return self.namespace, item


BOOTSTRAP = AdvisoryLock(
    "bootstrap", 72_001, LockScope.TRANSACTION, "reference-data bootstrap: one at a time across hosts"
)
SYMBOL_SYNC = AdvisoryLock(
    "symbol_sync", 72_030, LockScope.TRANSACTION, "symbol sync and cleanup: one writer of symbols at a time"
)
PIPELINE = AdvisoryLock(
    "pipeline",
    72_100,
    LockScope.SESSION,
    "one pipeline run at a time; held for the whole run (many transactions), released by the server if the"
    " process dies",
)
PIPELINE_QUEUE = AdvisoryLock(
    "pipeline_queue",
    72_110,
    LockScope.TRANSACTION,
    "a pipeline run being queued: the check that no run is queued or running and the new run in one step",
)
PROVIDER_RATE = AdvisoryLock(
    "provider_rate", 72_006, LockScope.TRANSACTION, "a provider's rate-limit window (item: provider code)"
)
FEATURE_SERIES = AdvisoryLock(
    "feature_series",
    72_200,
    LockScope.TRANSACTION,
    "market_data_v2 writes of one series (item: 'symbol_id:timeframe'); a chunked feature run holds those of"
    " all its chunk's series (`xact_locks`, in key order)",
)
FEATURE_SCHEDULE = AdvisoryLock(
    "feature_schedule",
    72_210,
    LockScope.SESSION,
    "one scheduled feature run per market (item: market code); held for the whole run",
)
CORRECTION = AdvisoryLock(
    "correction",
    72_300,
    LockScope.SESSION,
    "one correction execute or rollback at a time; held across its batch transactions",
)
CORRECTION_QUEUE = AdvisoryLock(
    "correction_queue",
    72_310,
    LockScope.TRANSACTION,
    "a correction execute being queued: the check that no other run is active and the mark of this one in one step",
)
IMPORT_FILE = AdvisoryLock(
    "import_file",
    73_001,
    LockScope.SESSION,
    "a worker is reading this import file (item: file id); dies with the worker's session, so an orphaned"
    " file can be claimed again",
)
IMPORT_START = AdvisoryLock(
    "import_start",
    73_010,
    LockScope.TRANSACTION,
    "an import job being created: the check that no running job reads the same folder and the new job in one step",
)
IMPORT_SLOT = AdvisoryLock(
    "import_slot",
    73_020,
    LockScope.SESSION,
    "one of an import job's max_concurrency worker slots (item: top job id * 64 + slot); held while a worker"
    " task claims and reads the job's files, so no more than max_concurrency tasks work on it at once",
)
METRICS = AdvisoryLock(
    "metrics", 72_400, LockScope.TRANSACTION, "one scrape at a time folds metric_deltas into metric_totals"
)
TRIGGERS_INSTALL = AdvisoryLock(
    "triggers_install",
    72_410,
    LockScope.TRANSACTION,
    "one install of the run tables' summary triggers at a time (post_migrate on several hosts at once would"
    " each count the window's runs once)",
)
SUMMARY_SYMBOLS = AdvisoryLock(
    "summary_symbols",
    72_500,
    LockScope.TRANSACTION,
    "the symbol attributes the integrity summaries count by (market, asset class): taken shared by every statement"
    " that counts rows under their symbol's market or class (the summary triggers), exclusive by a change of a"
    " symbol's market or class, so no statement counts under the old class after its rows were moved",
)
SUMMARY_FOLD = AdvisoryLock(
    "summary_fold", 72_510, LockScope.TRANSACTION, "one fold of the integrity summary deltas into the totals at a time"
)
LIVE_POLL = AdvisoryLock(
    "live_poll",
    72_220,
    LockScope.SESSION,
    "one live poll per market at a time (item: market code); held for the whole poll",
)
RUN = AdvisoryLock(
    "run",
    72_520,
    LockScope.SESSION,
    "a run's process is alive (item: 'app_label.model_name:id'): held while the run reports progress"
    " (etl.progress.RunPresence) and released by the server when the process dies, so the every-minute"
    " sweep (etl.recovery) finds a dead run at once",
)
BACKFILL = AdvisoryLock(
    "backfill",
    72_250,
    LockScope.SESSION,
    "a worker is running this backfill (item: backfill_state id); dies with the worker's session, so the"
    " every-minute sweep hands a backfill whose worker died to another within a minute",
)
CANDLE_PARTITIONS = AdvisoryLock(
    "candle_partitions",
    72_050,
    LockScope.TRANSACTION,
    "a time partition of a candle table being created or dropped (item: table name)",
)

LOCKS: tuple[AdvisoryLock, ...] = (
    BOOTSTRAP,
    SYMBOL_SYNC,
    PIPELINE,
    PIPELINE_QUEUE,
    PROVIDER_RATE,
    FEATURE_SERIES,
    FEATURE_SCHEDULE,
    CORRECTION,
    CORRECTION_QUEUE,
    IMPORT_FILE,
    IMPORT_START,
    IMPORT_SLOT,
    METRICS,
    TRIGGERS_INSTALL,
    SUMMARY_SYMBOLS,
    SUMMARY_FOLD,
    LIVE_POLL,
    RUN,
    BACKFILL,
    CANDLE_PARTITIONS,
)


def xact_lock(lock: AdvisoryLock, item: int | str = 0) -> None:
    """Wait for the lock until the current transaction ends."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", lock.key(item))


def xact_locks(lock: AdvisoryLock, items: Sequence[int | str]) -> None:
    """Wait for the lock of each item until the current transaction ends, in one statement and
    in key order, so that two callers taking overlapping groups never wait on each other in a
    cycle (a chunked feature run takes all its series at once; one-item callers cannot cycle)."""
    keys = sorted({lock.key(item)[1] for item in items})
    if not keys:
        return
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(pg_advisory_xact_lock(%s, s.k)) FROM (SELECT k FROM unnest(%s::int[]) AS k ORDER BY k) s",
            [lock.namespace, keys],
        )


def try_xact_lock(lock: AdvisoryLock, item: int | str = 0) -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", lock.key(item))
        return bool(cur.fetchone()[0])


def try_session_lock(lock: AdvisoryLock, item: int | str = 0) -> bool:
    """Take a session lock if free; the caller must call ``session_unlock``."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s, %s)", lock.key(item))
        return bool(cur.fetchone()[0])


def session_unlock(lock: AdvisoryLock, item: int | str = 0) -> None:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_unlock(%s, %s)", lock.key(item))


def try_session_locks(lock: AdvisoryLock, items: Sequence[int]) -> list[int]:
    """Try the session lock of each item in one statement (a worker claiming a group
    of files); the items whose lock is now held, in the order given. The caller
    releases each with ``session_unlock_many``."""
    if not items:
        return []
    keys = [lock.key(item)[1] for item in items]
    with connection.cursor() as cur:
        cur.execute(
            "SELECT v.n FROM unnest(%s::int[]) WITH ORDINALITY AS v(k, n) WHERE pg_try_advisory_lock(%s, v.k)",
            [int_array(keys), lock.namespace],
        )
        taken = {n for (n,) in cur.fetchall()}
    return [item for n, item in enumerate(items, start=1) if n in taken]


def session_unlock_many(lock: AdvisoryLock, items: Sequence[int]) -> None:
    """Release the session lock of each item (one statement)."""
    if not items:
        return
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pg_advisory_unlock(%s, v.k) FROM unnest(%s::int[]) AS v(k)",
            [lock.namespace, int_array(lock.key(item)[1] for item in items)],
        )


def held_items(lock: AdvisoryLock, items: Sequence[int] | None = None) -> set[int]:
    """Which items of `lock` some session of this database holds right now: of `items` when
    given (as passed), else every held item as `key()` gives it. One read of pg_locks for many
    items, rather than `is_held` for each."""
    if items is not None and not items:
        return set()
    sql = (
        "SELECT DISTINCT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND classid = %s AND objsubid = 2"
    )
    with connection.cursor() as cur:
        if items is None:
            cur.execute(sql, [lock.namespace])
            return {objid - 2**32 if objid >= 2**31 else objid for (objid,) in cur.fetchall()}
        by_objid = {lock.key(item)[1] & 0xFFFFFFFF: item for item in items}
        cur.execute(sql + " AND objid::bigint = ANY(%s::bigint[])", [lock.namespace, list(by_objid)])
        return {by_objid[objid] for (objid,) in cur.fetchall()}


@contextmanager
def session_lock(lock: AdvisoryLock, item: int | str = 0) -> Iterator[bool]:
    """Try a session lock; yield whether it is held; release it on exit."""
    acquired = try_session_lock(lock, item)
    try:
        yield acquired
    finally:
        if acquired:
            try:
                session_unlock(lock, item)
            except (InterfaceError, OperationalError):
                pass  # the session died (a PostgreSQL restart), and its locks with it


def is_held(lock: AdvisoryLock, item: int | str = 0) -> bool:
    """Does any session of this database (this one included) hold the lock right now? Read
    from pg_locks, where a two-key advisory lock shows as classid = namespace, objid = item,
    objsubid = 2; advisory locks are per database, so another database's holder does not count."""
    namespace, key = lock.key(item)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid = %s AND objid = %s AND objsubid = 2",
            [namespace, key & 0xFFFFFFFF],  # oid columns: the int4 item read as unsigned
        )
        return cur.fetchone()[0] > 0
