"""Two chunks of the feature step in flight at once, so that Python's work on one overlaps
PostgreSQL's on the other.

A chunk is computed in Python (payloads, kernels, metrics: one core) and written by PostgreSQL
(the COPYs, the triggers, the index inserts: the server's core), one after the other: run one
chunk at a time and one core waits for the other. Each chunk stays one transaction on one
connection, all of it — its locks, its read, its writes and its commit — so what a chunk
guarantees does not change (all or nothing, every series' lock held from the read to the
commit); a second worker thread, with a connection of its own, runs the next chunk meanwhile.
Chunks never share a series, so the two transactions never wait on each other's series locks.
psycopg releases the GIL while it waits on the server (COPY included), numpy inside its bulk
operations; the from-scratch path does its Python-only work under one lock
(`feature_scratch.PYTHON_WORK`) so that the two chunks take turns rather than advance in lockstep.

Inside a transaction (a test's, or a caller's atomic block) another connection could not see
what that transaction wrote: the chunks then run one by one on the caller's connection.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from django.db import connection, connections

Item = TypeVar("Item")
Result = TypeVar("Result")

# Two: the machine this runs on has two cores, and one chunk in Python plus one in the server
# fill them; a third would only add its memory (a chunk in flight holds about 300 MB).
CHUNK_WORKERS = 2


def run_overlapped(
    items: Iterable[Item],
    *,
    work: Callable[[Item], Result],
    workers: int = CHUNK_WORKERS,
    late: Callable[[Item, Result], None] | None = None,
) -> Iterator[tuple[Item, Result | Exception]]:
    """`work(item)` for each item, at most `workers` at once, each in a thread with its own
    database connection; yields (item, result or the Exception it raised) as each finishes.
    One by one on this thread when `workers` is 1 or a transaction is open here. Closing the
    iterator early (a cancel) lets the items in flight finish and starts no other: a worker
    starts its next item once the caller has taken a result; `late(item, result)` is called, on
    the caller's thread, for each of those that then succeeded (their work is done: committed)."""
    if workers <= 1 or connection.in_atomic_block:
        return _one_by_one(items, work)
    return _Overlap(items, work, late).run(workers)


def _one_by_one(items: Iterable[Item], work: Callable[[Item], Result]) -> Iterator[tuple[Item, Result | Exception]]:
    for item in items:
        try:
            yield item, work(item)
        except Exception as exc:  # the caller decides: fall back, or raise
            yield item, exc


_END = object()


class _Overlap:
    def __init__(self, items: Iterable, work: Callable, late: Callable | None = None) -> None:
        self.source = iter(items)
        self.work = work
        self.late = late
        self.take = threading.Lock()
        self.stop = threading.Event()
        self.done: queue.Queue = queue.Queue()
        # An item is started only when the caller has taken the result of one before it (or at
        # the start): a cancel seen on a result leaves only the items already in flight to finish.
        self.slots = threading.Semaphore(0)

    def run(self, workers: int) -> Iterator[tuple]:
        # Each thread in a copy of the caller's context: the run's log tag (etl.logcontext) goes with it.
        threads = [
            threading.Thread(target=contextvars.copy_context().run, args=(self.worker,), name=f"feature-chunk-{i}")
            for i in range(workers)
        ]
        for thread in threads:
            thread.daemon = True
        self.slots.release(workers)
        for thread in threads:
            thread.start()
        running = len(threads)
        try:
            while running:
                got = self.done.get()
                if got is _END:
                    running -= 1
                elif isinstance(got[1], Exception) or not isinstance(got[1], BaseException):
                    yield got
                    self.slots.release()
                else:
                    raise got[1]  # not the item's fault (an interrupt): raised on the caller's thread
        finally:
            self.stop.set()
            self.slots.release(workers)  # wakes the waiting workers, which see `stop` and end
            for thread in threads:
                thread.join()
            self._finished_late()

    def _finished_late(self) -> None:
        """The results nobody took (the caller stopped): hand the successes to `late`."""
        while True:
            try:
                got = self.done.get_nowait()
            except queue.Empty:
                return
            if got is not _END and self.late is not None and not isinstance(got[1], BaseException):
                self.late(*got)

    def worker(self) -> None:
        try:
            while True:
                self.slots.acquire()
                if self.stop.is_set():
                    return
                with self.take:
                    item = next(self.source, _END)
                if item is _END:
                    return
                try:
                    self.done.put((item, self.work(item)))
                except BaseException as exc:  # handed to the caller's thread, which decides
                    self.done.put((item, exc))
                    if not isinstance(exc, Exception):
                        return
        finally:
            connections.close_all()  # this thread's connections only (they are per thread)
            self.done.put(_END)
