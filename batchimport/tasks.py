"""django-q2 entry points: ids in, one service call, counts out."""

from __future__ import annotations

from typing import Any

from batchimport import services


def import_job_work(job_id: int, max_files: int | None = None) -> dict[str, Any]:
    result = services.import_job_work(job_id=job_id, max_files=max_files)
    return {"job_id": result.job_id, "files": result.files_processed, "rows_read": result.rows_read}


def scheduled_import(name: str, path: str, tz: str = "UTC", options: dict | None = None, **_: Any) -> dict[str, Any]:
    return services.scheduled_import_run(name=name, path=path, tz=tz, options=options)


def sla_check() -> int:
    return services.sla_check()


def orphaned_files_requeue() -> int:
    return services.orphaned_files_requeue().files_requeued
