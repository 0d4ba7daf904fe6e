"""How many workers share a queued import job: `max_concurrency` (the request's
`maxConcurrency` / `globalMaxConcurrency`, or the market's setting).

Two halves, both here:
- enqueue: a queued job gets `max_concurrency` django-q2 tasks (fewer when it has
  fewer files waiting); each claims files until none is left, so the job's files are
  spread over that many tasks;
- at once: a task must hold one of the job's `max_concurrency` worker slots (a
  session advisory lock, `etl.locks.IMPORT_SLOT`) while it works. A task that finds
  every slot taken — a retry woken by its schedule while the job's tasks still run,
  an operator's retry, the orphan sweep — stops at once: the tasks holding the slots
  claim whatever is left. So never more than `max_concurrency` read the job's files
  at the same time, on any number of hosts.

The slots belong to the top job (an all-markets job's tasks share its
`globalMaxConcurrency`); a task released from its slot looks once more for files
that became due while it held it, so a retry refused a slot is not left waiting.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db.models import Q
from django.db.models.functions import Now
from django_q.tasks import async_task

from batchimport.models import ImportFile, ImportJob, ImportStatus
from etl.locks import IMPORT_SLOT, session_unlock, try_session_lock

TASK = "batchimport.tasks.import_job_work"


def _root(job: ImportJob) -> ImportJob:
    return job.parent if job.parent_id else job


def tasks_wanted(job: ImportJob) -> int:
    """Worker tasks to queue for the job: its concurrency, or fewer when fewer files wait (at least one,
    which finishes the job when nothing is left)."""
    root = _root(job)
    waiting = ImportFile.objects.filter(Q(job=root) | Q(job__parent=root), status=ImportStatus.QUEUED).count()
    return max(1, min(root.max_concurrency, waiting))


def job_enqueue(job_id: int) -> int:
    """Hand the job to the django-q2 workers: `tasks_wanted` tasks, each claiming files
    until none is left. Returns how many were queued."""
    job = ImportJob.objects.select_related("parent").get(pk=job_id)
    count = tasks_wanted(job)
    for _ in range(count):
        async_task(TASK, job_id, group="batchimport")
    return count


def _slot_item(root_id: int, slot: int) -> int:
    return root_id * 64 + slot  # max_concurrency stays below 64 (MAX_CONCURRENCY_LIMIT)


@contextmanager
def worker_slot(job: ImportJob) -> Iterator[int | None]:
    """Take a free worker slot of the job's top job (0 .. max_concurrency - 1) for
    this session; yield its number, or None when all are taken. Released on exit."""
    root = _root(job)
    taken = None
    for slot in range(max(1, root.max_concurrency)):
        if try_session_lock(IMPORT_SLOT, _slot_item(root.pk, slot)):
            taken = slot
            break
    try:
        yield taken
    finally:
        if taken is not None:
            session_unlock(IMPORT_SLOT, _slot_item(root.pk, taken))


def files_due(job: ImportJob) -> bool:
    """Files of the job that a worker could claim now (queued and due)."""
    root = _root(job)
    return (
        ImportFile.objects.filter(Q(job=root) | Q(job__parent=root), status=ImportStatus.QUEUED)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=Now()))
        .exists()
    )
