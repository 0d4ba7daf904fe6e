"""Recording what happened to a run when the database connection it ran on has died.

A run's error path writes its outcome (failed, retry scheduled) with the same
connection its work used. After a PostgreSQL restart that connection is dead,
the write fails too, and the run stays `running` with no error and nothing
scheduled. `write_after_reconnect` closes the dead connection and writes on a
new one, waiting with backoff while the server comes back; it says so once.

A run whose process died outright (killed, or lost its connection for good)
writes nothing at all. While a run reports progress its process holds the run's
session lock and stamps its heartbeat (`etl.progress.RunPresence`); PostgreSQL
releases the lock when the process dies. `runs_heartbeat_sweep`, run every
minute, marks failed with the reason every run still `running` whose lock is
free and whose beat has stopped, so a dead run is found within a minute. (Like
the other session locks, this needs the workers' connections to be direct or in
PgBouncer's session pool mode.) Cancel works on such a run at once
(`dead_runs_cancel`), and other work that a dead worker holds (a backfill) is
recovered by the sweeps apps register here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

import psycopg
from django.db import InterfaceError, OperationalError, connection
from django.db.models import QuerySet, Subquery
from django.utils import timezone

from etl import locks
from etl.metrics import run_models
from etl.models import RunHeartbeat, RunStatus
from etl.progress import HEARTBEAT_SECONDS

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
# A running run whose last beat is older than this, and whose run lock no session holds,
# lost its process. A live run holds its lock the whole time; the margin keeps the sweep
# off a run whose reporter is opening right now (it takes the lock, then beats).
DEAD_AFTER = timedelta(seconds=2 * HEARTBEAT_SECONDS)
# Beats of runs long finished are dropped by the sweep.
HEARTBEAT_KEEP = timedelta(days=1)
# The scheduled function of this module that finds dead runs (`RunRecord.dead_run_sweep`).
SWEEP = "etl.recovery.runs_heartbeat_sweep"
DEAD_RUN_ERROR = (
    "its process stopped (killed, or its database connection lost): no process holds its run lock and its last"
    " heartbeat is over {seconds:g} s old; run it again"
)
# Other work whose worker may die (not a run record: a backfill's lease), swept here too;
# each app registers its own from its AppConfig.ready().
_WORK_SWEEPS: dict[str, Callable[[], int]] = {}


def register_work_sweep(name: str, sweep: Callable[[], int]) -> None:
    """Run `sweep` (it returns how many items it recovered) with every heartbeat sweep."""
    _WORK_SWEEPS[name] = sweep


@dataclass(frozen=True, slots=True)
class HeartbeatSweep:
    runs_failed: dict[str, tuple[int, ...]]  # app_label.model_name -> ids
    work_recovered: dict[str, int] = field(default_factory=dict)  # registered sweep -> items


def dead_run_ids(model, ids: list[int] | None = None, *, beat_before: datetime | None = None) -> list[int]:
    """The `running` runs of `model` (among `ids`) whose process is gone: no session holds
    their run lock. With `beat_before`, only those whose last beat is older. Only for the
    run types this module watches (the others hold no run lock: their app's own lock tells)."""
    if model.dead_run_sweep != SWEEP:
        raise TypeError(f"{model._meta.label}: its app finds its dead runs itself ({model.dead_run_sweep})")
    runs = model.objects.filter(status=RunStatus.RUNNING)
    if ids is not None:
        runs = runs.filter(pk__in=ids)
    if beat_before is not None:
        label = model._meta.label_lower
        beats = RunHeartbeat.objects.filter(run_model=label, beat_at__lt=beat_before).values("run_id")
        runs = runs.filter(pk__in=Subquery(beats))
    candidates = list(runs.values_list("pk", flat=True))
    if not candidates:
        return []
    held = locks.held_items(locks.RUN)
    return sorted(pk for pk in candidates if locks.RUN.key(f"{model._meta.label_lower}:{pk}")[1] not in held)


def runs_heartbeat_sweep(*, now: datetime | None = None) -> HeartbeatSweep:
    """Mark failed, with the reason, every run still `running` whose process is gone: no
    session holds its run lock (PostgreSQL released it when the process died) and its
    last beat is older than DEAD_AFTER. A run with no beat (started before heartbeats,
    or by code that reports none) is left alone, and so are the run types whose app
    recovers them itself (`RunRecord.dead_run_sweep`). Each stays where its last batch
    left it: running it again resumes where the app supports that. Then the registered
    sweeps of other work. Run every minute by a django-q2 schedule."""
    now = now or timezone.now()
    beat_before = now - DEAD_AFTER
    error = DEAD_RUN_ERROR.format(seconds=DEAD_AFTER.total_seconds())
    failed: dict[str, tuple[int, ...]] = {}
    for model in run_models():
        label = model._meta.label_lower
        if model.dead_run_sweep != SWEEP or (label in ALIVE_BY_LOCK and locks.is_held(ALIVE_BY_LOCK[label])):
            continue
        ids = dead_run_ids(model, beat_before=beat_before)
        # the UPDATE reads the beats again: a process that beat meanwhile is alive after all
        beats = RunHeartbeat.objects.filter(run_model=label, beat_at__lt=beat_before).values("run_id")
        runs = model.objects.filter(pk__in=ids, status=RunStatus.RUNNING).filter(pk__in=Subquery(beats))
        if ids and runs.update(status=RunStatus.FAILED, error=error, finished_at=now):
            failed[label] = tuple(
                sorted(model.objects.filter(pk__in=ids, finished_at=now, error=error).values_list("pk", flat=True))
            )
            log.warning("%s run(s) %s lost their process: marked failed", label, list(failed[label]))
        running = model.objects.filter(status=RunStatus.RUNNING).values("pk")
        RunHeartbeat.objects.filter(run_model=label).exclude(run_id__in=Subquery(running)).delete()
    RunHeartbeat.objects.filter(beat_at__lt=now - HEARTBEAT_KEEP).delete()
    recovered = {name: sweep() for name, sweep in _WORK_SWEEPS.items()}
    return HeartbeatSweep(runs_failed=failed, work_recovered=recovered)


def dead_runs_cancel(*, runs: QuerySet) -> tuple[int, ...]:
    """Mark cancelled at once the `running` ones among `runs` whose process is gone (no
    session holds their run lock): nobody is left to read the cancel request between
    batches. Returns their ids; the others keep waiting for their process to stop."""
    ids = dead_run_ids(runs.model, list(runs.values_list("pk", flat=True)))
    if not ids:
        return ()
    runs.model.objects.filter(pk__in=ids, status=RunStatus.RUNNING).update(
        status=RunStatus.CANCELLED,
        cancel_requested=True,
        finished_at=timezone.now(),
        error="cancelled by an operator; its process had stopped (killed, or its database connection lost)",
    )
    return tuple(ids)


__all__ = [
    "CONNECTION_ERRORS",
    "DEAD_AFTER",
    "HeartbeatSweep",
    "connection_lost",
    "connection_reset",
    "dead_run_ids",
    "dead_runs_cancel",
    "is_connection_error",
    "register_work_sweep",
    "runs_heartbeat_sweep",
    "write_after_reconnect",
]
