"""Recording what happened to a run when the database connection it ran on has died.

A run's error path writes its outcome (failed, retry scheduled) with the same
connection its work used. After a PostgreSQL restart that connection is dead,
the write fails too, and the run stays `running` with no error and nothing
scheduled. `write_after_reconnect` closes the dead connection and writes on a
new one, waiting with backoff while the server comes back; it says so once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection

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


__all__ = ["CONNECTION_ERRORS", "connection_reset", "is_connection_error", "write_after_reconnect"]
