"""Handing work to the django-q2 workers, once, for every app.

Work is queued when the caller's transaction commits, never before: a worker
must not read a run row that may still roll back. The task is named here, so
its id is known before it is queued; django-q2 finds a task by that name as
well as by its own id (`django_q.tasks.result(name)`, `fetch(name)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any
from uuid import uuid4

from django.db import transaction
from django_q.tasks import async_task


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
