"""Progress and cancellation for long work.

A service takes an optional `ProgressReporter`; it calls `advance(n)` after each
batch. The reporter writes done/total/rate to the run record (at most every
`interval` seconds, with a conditional UPDATE, never a full save), draws a
terminal bar when given a console, and raises `Cancelled` when an operator
has asked the run to stop, so cancellation happens between batches.

While a reporter is open its run is present (`RunPresence`): its process holds
the run's session lock (`etl.locks.RUN`), which PostgreSQL releases when the
process dies, and its heartbeat (`etl.models.RunHeartbeat`) is stamped at most
every HEARTBEAT_SECONDS by any reporter of the process (a pipeline step whose own
work reports on another record keeps the pipeline run beating too).
`etl.recovery.runs_heartbeat_sweep` fails a running run whose lock is free and
whose beat has stopped.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import weakref
from typing import Any

from django.db import DatabaseError, connection, models
from django.utils import timezone

from etl import locks
from etl.logcontext import _current as _current_run
from etl.models import RunHeartbeat, RunRecord

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0


class _Heartbeat:
    """The runs present in this process, stamped together, at most every
    HEARTBEAT_SECONDS (one INSERT ... ON CONFLICT for all of them)."""

    def __init__(self) -> None:
        self.open: weakref.WeakSet[RunPresence] = weakref.WeakSet()
        self.last = float("-inf")
        self.guard = threading.Lock()

    def beat(self, *, force: bool = False) -> None:
        now = time.monotonic()
        with self.guard:
            if not force and now - self.last < HEARTBEAT_SECONDS:
                return
            self.last = now
            runs = {(r.run._meta.label_lower, r.run.pk) for r in list(self.open) if isinstance(r.run, RunRecord)}
        if not runs:
            return
        moment = timezone.now()
        RunHeartbeat.objects.bulk_create(
            [RunHeartbeat(run_model=label, run_id=pk, beat_at=moment) for label, pk in sorted(runs)],
            update_conflicts=True,
            unique_fields=["run_model", "run_id"],
            update_fields=["beat_at"],
        )


_heartbeat = _Heartbeat()


def run_lock_item(run: models.Model) -> str:
    """The item of `etl.locks.RUN` that says this run's process is alive."""
    return f"{run._meta.label_lower}:{run.pk}"


class RunPresence:
    """While open, its run is known to be alive: the run's session lock is held on the
    session of the thread that opened it (taken again by `keep` after a reconnect: the
    old session's locks died with it) and the run's beat is stamped with the process's
    others. `close` releases the lock and drops the beat once no other presence of the
    same run is open here. Opened by every `ProgressReporter` of a run record; a service
    whose run outlives its reporters (the pipeline, between steps) opens one itself."""

    def __init__(self, run: RunRecord):
        self.run = run
        self.item = run_lock_item(run)
        self._thread = threading.get_ident()
        self._held_on: Any = None  # the session (psycopg connection) that holds the lock
        self.keep()  # the lock before the first beat: a beat without a held lock means a dead process
        _heartbeat.open.add(self)
        _heartbeat.beat(force=True)

    def keep(self) -> None:
        """Hold the lock on the current session (one query, only when the session changed)."""
        if threading.get_ident() != self._thread:
            return  # another thread's session: its lock would outlive this presence
        if self._held_on is not None and self._held_on is connection.connection:
            return
        # Not taken while another process holds it (a task delivered twice): tried again at the next keep.
        taken = locks.try_session_lock(locks.RUN, self.item)
        self._held_on = connection.connection if taken else None

    def close(self) -> None:
        if self not in _heartbeat.open:
            return  # closed already
        _heartbeat.open.discard(self)
        held_on, self._held_on = self._held_on, None
        try:
            if held_on is not None and held_on is connection.connection and threading.get_ident() == self._thread:
                locks.session_unlock(locks.RUN, self.item)
            if not any(other.item == self.item for other in list(_heartbeat.open)):
                RunHeartbeat.objects.filter(run_model=self.run._meta.label_lower, run_id=self.run.pk).delete()
        except DatabaseError:  # the session is gone (and its lock with it); the sweep drops the beat
            log.warning("could not release the presence of %s", self.item, exc_info=True)

    def __enter__(self) -> RunPresence:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Cancelled(Exception):
    """The run was cancelled by an operator; raised between batches."""


class ProgressReporter:
    def __init__(
        self,
        run: models.Model | None = None,
        *,
        total: int | None = None,
        label: str = "",
        bar: bool = False,
        interval: float = 0.5,
        clock=time.monotonic,
    ):
        self.run = run
        self.total = total
        self.done = 0
        self.label = label
        self.interval = interval
        self._clock = clock
        self._started = clock()
        self._last_flush = float("-inf")
        self._bar = None
        self._task = None
        if bar and sys.stderr.isatty():
            # Imported only for a terminal bar: rich.progress takes ~85 ms to import
            # (python -X importtime), paid otherwise by every worker and request.
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.percentage:>5.1f}%"),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(label or "working", total=total)
        self._run_token = None
        # The runs the heartbeat sweep watches are present while reported on (an import file, a
        # correction: their app's own lock tells); other reporters only keep those beating.
        watched = isinstance(run, RunRecord) and type(run).dead_run_sweep == RunRecord.dead_run_sweep
        self._presence = RunPresence(run) if watched else None
        if run is not None and total is not None:
            self._update_run(progress_total=total)

    @property
    def rate(self) -> float:
        elapsed = self._clock() - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    def set_total(self, total: int) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.update(self._task, total=total)
        self._update_run(progress_total=total)

    def advance(self, n: int = 1, *, check_cancel: bool = True) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        now = self._clock()
        if now - self._last_flush >= self.interval:
            self.flush()
            if check_cancel:
                self.check_cancel()

    def flush(self) -> None:
        self._last_flush = self._clock()
        self._update_run(progress_done=self.done, rate_per_second=round(self.rate, 3))
        if self._presence is not None:
            self._presence.keep()
        _heartbeat.beat()

    def check_cancel(self) -> None:
        if self.run is None:
            return
        cancelled = type(self.run).objects.filter(pk=self.run.pk, cancel_requested=True).exists()
        if cancelled:
            raise Cancelled(f"{type(self.run).__name__} {self.run.pk} was cancelled")

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._presence is not None:
                self._presence.close()
            if self._bar is not None:
                self._bar.stop()
                self._bar = None
            if self._run_token is not None:
                try:
                    _current_run.reset(self._run_token)
                except ValueError:  # closed from another context than it was opened in
                    pass
                self._run_token = None

    def close_quietly(self) -> None:
        """`close` on an error path: a last flush that fails (the connection died
        with the error being handled) is logged, not raised over that error."""
        try:
            self.close()
        except DatabaseError:
            log.warning("could not write the last progress of %s", self.label or "a run", exc_info=True)

    def _update_run(self, **fields: Any) -> None:
        if self.run is None:
            return
        type(self.run).objects.filter(pk=self.run.pk).update(**fields)
        for name, value in fields.items():
            setattr(self.run, name, value)

    def __enter__(self) -> ProgressReporter:
        # Used as a context manager, every log line written inside carries the run.
        if self.run is not None:
            self._run_token = _current_run.set((type(self.run)._meta.model_name, str(self.run.pk)))
        return self

    def __exit__(self, *exc) -> None:
        self.close()
