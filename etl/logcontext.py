"""The run that the current code works for, carried into every log line.

`run_context("import", job.pk)` sets it for the duration of a block (context
variables follow threads and async tasks correctly); `RunContextFilter` adds
`run_type`, `run_id` and a short `run` tag to each record.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager

_current: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("mytrader_run", default=None)


@contextmanager
def run_context(run_type: str, run_id: object) -> Iterator[None]:
    token = _current.set((run_type, str(run_id)))
    try:
        yield
    finally:
        _current.reset(token)


def current_run() -> tuple[str, str] | None:
    return _current.get()


class RunContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        run = _current.get()
        record.run_type, record.run_id = run if run else (None, None)
        record.run = f"[{run[0]}:{run[1]}]" if run else "-"
        return True
