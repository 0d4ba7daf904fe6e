"""Handing work to the django-q2 workers, once, for every app.

Work is queued when the caller's transaction commits, never before: a worker
must not read a run row that may still roll back. The task is named here, so
its id is known before it is queued; django-q2 finds a task by that name as
well as by its own id (`django_q.tasks.result(name)`, `fetch(name)`).
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from functools import partial
from typing import Any
from uuid import uuid4

from django.core.signing import BadSignature
from django.db import DatabaseError, connections, transaction
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.signing import SignedPackage
from django_q.tasks import async_task

from etl.models import SigningProbe
from etl.recovery import CONNECTION_ERRORS, FIRST_DELAY, MAX_DELAY

log = logging.getLogger(__name__)

WEB_PROBE = "web"
WORKER_PROBE_PREFIX = "worker:"
PROBE_TEXT = "mytrader signing probe"


@dataclass(frozen=True, slots=True)
class QueuedTask:
    task_id: str
    func: str


def queue_on_commit(func: str, *args: Any, group: str, **kwargs: Any) -> QueuedTask:
    """Queue `func(*args, **kwargs)` on the workers once the current transaction
    commits (at once outside a transaction). Returns the task's name, its id."""
    task_id = f"{func.rsplit('.', 1)[-1]}-{uuid4().hex[:16]}"
    transaction.on_commit(partial(async_task, func, *args, group=group, task_name=task_id, **kwargs))
    return QueuedTask(task_id=task_id, func=func)


@dataclass(frozen=True, slots=True)
class KeyCheck:
    ok: bool
    reason: str


def worker_probe_name() -> str:
    return f"{WORKER_PROBE_PREFIX}{socket.gethostname()}"


def signing_probe_write(name: str) -> None:
    """Record `PROBE_TEXT` signed with this process's SECRET_KEY under `name`."""
    SigningProbe.objects.update_or_create(
        name=name, defaults={"signed": SignedPackage.dumps(PROBE_TEXT), "written_at": timezone.now()}
    )


def signing_probe_readable(probe: SigningProbe) -> bool:
    """Was the probe signed with this process's SECRET_KEY (so are its tasks readable here)?"""
    try:
        return SignedPackage.loads(probe.signed) == PROBE_TEXT
    except (BadSignature, ValueError, TypeError):  # another key, or not a signed package at all
        return False


_web_probe_written = False


def web_probe_on_request(**_signal_kwargs: Any) -> None:
    """`request_started` receiver: the web writes its probe once per process. A
    failed write (database away) is tried again on the next request."""
    global _web_probe_written  # one write per process, not per request
    if _web_probe_written:
        return
    try:
        signing_probe_write(WEB_PROBE)
    except DatabaseError:
        log.warning("could not write the web's signing probe; trying again on the next request", exc_info=True)
        return
    _web_probe_written = True


def worker_key_check() -> KeyCheck:
    """Before a worker cluster starts: can it read what the web signs? Records the
    worker's own probe, so health on the web can tell when the keys differ."""
    signing_probe_write(worker_probe_name())
    web = SigningProbe.objects.filter(name=WEB_PROBE).first()
    if web is None:
        return KeyCheck(True, "the web has written no signing probe yet (no request served): not checked")
    if signing_probe_readable(web):
        return KeyCheck(True, "this worker reads the tasks the web signs")
    return KeyCheck(
        False,
        f"this worker's SECRET_KEY differs from the web's (its probe of {web.written_at:%Y-%m-%d %H:%M:%S} "
        "does not verify): every task the web queues would be dropped; set the same SECRET_KEY on both",
    )


def mismatched_workers() -> list[SigningProbe]:
    """The workers whose probe this process (the web) cannot read: their key differs."""
    probes = SigningProbe.objects.filter(name__startswith=WORKER_PROBE_PREFIX).order_by("name")
    return [probe for probe in probes if not signing_probe_readable(probe)]


@dataclass(slots=True)
class _Reconnect:
    """A cluster process's view of its database connection (mutable, internal)."""

    lost: bool = False
    delay: float = 0.0
    retry_at: float = 0.0


class ReconnectingORM(ORM):
    """django-q2's ORM broker, quiet and patient when PostgreSQL goes away.

    The sentinel writes its status every half second and the pusher polls the
    queue: on a dead connection django-q2 logs the same error each time (an error
    loop for as long as the server is down). Here a lost connection is closed,
    calls wait with backoff (FIRST_DELAY doubling to MAX_DELAY) for the server,
    one warning says so and one line says when it is back. Each cluster process
    has its own copy (the broker is pickled into them without this state)."""

    def _reconnect(self) -> _Reconnect:
        state = getattr(self, "_reconnect_state", None)
        if state is None:
            state = self._reconnect_state = _Reconnect()
        return state

    def _guarded(self, call, *args, default: Any = None, wait: bool = False) -> Any:
        state = self._reconnect()
        now = time.monotonic()
        if now < state.retry_at:
            if not wait:
                return default
            time.sleep(state.retry_at - now)
        try:
            result = call(*args)
        except CONNECTION_ERRORS as exc:
            if not state.lost:
                log.warning("queue: database connection lost (%s); reconnecting with backoff", exc)
                state.lost = True
            connections[Conf.ORM].close()  # the next call opens a new one
            state.delay = min(max(state.delay * 2, FIRST_DELAY), MAX_DELAY)
            state.retry_at = time.monotonic() + state.delay
            return default
        if state.lost:
            log.info("queue: database connection back")
            state.lost, state.delay, state.retry_at = False, 0.0, 0.0
        return result

    def dequeue(self):
        return self._guarded(super().dequeue, default=None, wait=True)

    def set_stat(self, key: str, value: str, timeout: int) -> None:
        self._guarded(super().set_stat, key, value, timeout)

    def queue_size(self) -> int:
        return self._guarded(super().queue_size, default=0)
