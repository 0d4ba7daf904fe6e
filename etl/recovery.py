"""Recording what happened to a run when the database connection it ran on has died.

A run's error path writes its outcome (failed, retry scheduled) with the same
connection its work used. After a PostgreSQL restart that connection is dead,
the write fails too, and the run stays `running` with no error and nothing
scheduled. `write_after_reconnect` closes the dead connection and writes on a
new one, waiting with backoff while the server comes back; it says so once.

A run whose process died outright (killed, or lost its connection for good)
writes nothing at all. `runs_heartbeat_sweep`, run every minute, marks failed
with the reason every run still `running` whose heartbeat (stamped by its
`ProgressReporter`) is older than RUN_HEARTBEAT_STALE_MINUTES: this needs no
session lock, so it also works behind a transaction-pooling PgBouncer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import psycopg
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.db.models import Subquery
from django.utils import timezone

from etl import locks
from etl.metrics import run_models
from etl.models import RunHeartbeat, RunStatus

log = logging.getLogger(__name__)

T = TypeVar("T")

# psycopg reports a dead session as OperationalError ("terminating connection due
# to administrator command", "server closed the connection unexpectedly") or, once
# Django knows, InterfaceError ("the connection is closed").
CONNECTION_ERRORS = (OperationalError, InterfaceError)
ATTEMPTS = 8
FIRST_DELAY = 0.5
MAX_DELAY = 8.0


def is_connection_error(exc: BaseException) -> bool:
    """Did this error come from a lost database connection (not from bad data)?"""
    return isinstance(exc, CONNECTION_ERRORS)


def _is_session_loss(exc: BaseException) -> bool:
    """psycopg's own word that the session is gone: a closed connection, a failure
    below SQL (no SQLSTATE: "server closed the connection", "connection failed"),
    or the server ending it (class 08 connection exceptions, 57P shutdowns)."""
    if isinstance(exc, psycopg.InterfaceError):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate or ""
    return not state or state.startswith(("08", "57P"))


def connection_lost(exc: BaseException) -> str | None:
    """For an error that comes from a lost database session: "database connection
    lost (<what the server said first>)". The first cause, not the last: the
    clean-up after a cut session raises again on the dead connection ("the database
    system is shutting down", "the connection is closed"), which hides what happened.
    None for any other error (bad data, a statement timeout, a bug)."""
    lost: BaseException | None = None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_session_loss(current):
            lost = current  # keep walking: the earliest one is the cause
        current = current.__cause__ or current.__context__
    if lost is None:
        return None
    said = (str(lost).strip().splitlines() or [type(lost).__name__])[0]
    return f"database connection lost ({said})"


def connection_reset() -> None:
    """Drop the current connection when it is broken, so the next query opens a new
    one (the dead session's locks died with it). A no-op inside a transaction:
    the caller's atomic block must end first."""
    if connection.connection is None or connection.in_atomic_block:
        return
    if not connection.is_usable():
        connection.close()


def write_after_reconnect(
    write: Callable[[], T],
    *,
    what: str,
    attempts: int = ATTEMPTS,
    first_delay: float = FIRST_DELAY,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `write` (an error path's UPDATE). When the connection is dead, close it
    and try again on a new one, backing off from `first_delay` seconds (doubling,
    at most MAX_DELAY) for up to `attempts` tries: about a minute, the time a
    restart takes. Logs one warning when it starts reconnecting and one line when
    it is back; raises the last error when the server stays away."""
    delay = first_delay
    for attempt in range(1, attempts):
        try:
            result = write()
        except CONNECTION_ERRORS as exc:
            if connection.in_atomic_block:
                raise  # a new connection cannot continue the caller's transaction
            if attempt == 1:
                log.warning("database connection lost while recording %s (%s); reconnecting with backoff", what, exc)
            connection.close()
            sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
            continue
        if attempt > 1:
            log.info("database connection back after %s attempts; recorded %s", attempt, what)
        return result
    result = write()  # the last try: its error, if any, goes to the caller
    log.info("database connection back after %s attempts; recorded %s", attempts, what)
    return result


# A run whose process holds its session lock is alive, whatever its heartbeat says
# (a long step that reports no progress); where no such lock is held the beat decides.
ALIVE_BY_LOCK: dict[str, locks.AdvisoryLock] = {"etl.pipelinerun": locks.PIPELINE}
# Beats of runs long finished are dropped by the sweep.
HEARTBEAT_KEEP = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class HeartbeatSweep:
    runs_failed: dict[str, tuple[int, ...]]  # app_label.model_name -> ids


def runs_heartbeat_sweep(*, now: datetime | None = None) -> HeartbeatSweep:
    """Mark failed, with the reason, every run still `running` whose heartbeat is
    older than RUN_HEARTBEAT_STALE_MINUTES (its process is gone). A run with no
    heartbeat at all (started before heartbeats, or by code that reports none)
    is left alone. Each stays where its last batch left it: running it again
    resumes where the app supports that. Run every minute by a django-q2 schedule."""
    now = now or timezone.now()
    stale_minutes = float(getattr(settings, "RUN_HEARTBEAT_STALE_MINUTES", 5))
    stale_before = now - timedelta(minutes=stale_minutes)
    failed: dict[str, tuple[int, ...]] = {}
    for model in run_models():
        label = model._meta.label_lower
        if label in ALIVE_BY_LOCK and locks.is_held(ALIVE_BY_LOCK[label]):
            continue
        stale = RunHeartbeat.objects.filter(run_model=label, beat_at__lt=stale_before).values("run_id")
        runs = model.objects.filter(status=RunStatus.RUNNING, pk__in=Subquery(stale))
        ids = tuple(sorted(runs.values_list("pk", flat=True)))
        if not ids:
            continue
        error = (
            f"its process stopped (killed, or its database connection lost): no heartbeat for over "
            f"{stale_minutes:g} minute(s); run it again"
        )
        # the UPDATE reads the beats again: a process that beat meanwhile is alive after all
        if runs.filter(pk__in=ids).update(status=RunStatus.FAILED, error=error, finished_at=now):
            ids = tuple(
                sorted(model.objects.filter(pk__in=ids, finished_at=now, error=error).values_list("pk", flat=True))
            )
            failed[label] = ids
            log.warning("%s run(s) %s had no heartbeat since %s: marked failed", label, list(ids), stale_before)
    RunHeartbeat.objects.filter(beat_at__lt=now - HEARTBEAT_KEEP).delete()
    return HeartbeatSweep(runs_failed=failed)


__all__ = [
    "CONNECTION_ERRORS",
    "HeartbeatSweep",
    "connection_lost",
    "connection_reset",
    "is_connection_error",
    "runs_heartbeat_sweep",
    "write_after_reconnect",
]
