"""Files left `running` by a worker that died: found by their lock, put back in the queue.

The broker gives no delivery receipts (Redis drops a task whose worker dies),
so without this sweep such a file would wait until another task of its job
happened to run. A live worker holds the file's session advisory lock
(`etl.locks.IMPORT_FILE`) while it reads; PostgreSQL releases it when the
worker's session ends, which is how a dead worker is told from a slow one.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from batchimport.models import ImportFile, ImportJob, ImportStatus
from batchimport.services.jobs import import_job_start
from etl.locks import IMPORT_FILE, held_items


@dataclass(frozen=True, slots=True)
class SweepResult:
    files_requeued: int
    jobs_woken: tuple[int, ...]


@transaction.atomic
def orphaned_files_requeue() -> SweepResult:
    """Queue again every `running` file whose worker is gone, and wake their
    jobs' workers once this commits. Files being
    claimed right now (row locked) or read by a live worker are left alone."""
    running = (
        ImportFile.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(status=ImportStatus.RUNNING)
        .values_list("pk", "job_id", "job__parent_id")
    )
    running = list(running)
    held = held_items(IMPORT_FILE, [pk for pk, _, _ in running])  # one read of pg_locks for them all
    orphans = [(pk, parent_id or job_id) for pk, job_id, parent_id in running if pk not in held]
    if not orphans:
        return SweepResult(files_requeued=0, jobs_woken=())
    requeued = ImportFile.objects.filter(pk__in=[pk for pk, _ in orphans], status=ImportStatus.RUNNING).update(
        status=ImportStatus.QUEUED, next_attempt_at=None, error="its worker stopped mid-file; queued again"
    )
    roots = tuple(sorted({root for _, root in orphans}))
    for job in ImportJob.objects.filter(pk__in=roots):
        import_job_start(job=job, queue=True)  # on commit: a task for each of its workers
    return SweepResult(files_requeued=requeued, jobs_woken=roots)
