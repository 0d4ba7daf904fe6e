"""The pipeline's "import" step (order 20), registered from BatchimportConfig.ready()."""

from __future__ import annotations

from typing import Any

from batchimport.services.jobs import import_job_submit


def import_step(*, options: dict[str, Any], progress=None) -> dict[str, Any]:
    """Import `options["path"]` (optionally `market`) when given; otherwise skip."""
    path = options.get("path")
    if not path:
        return {"skipped": True, "reason": "no path in the pipeline options"}
    on_batch = (lambda n: progress.advance(n)) if progress is not None else None
    job = import_job_submit(
        queue=False,
        workers=int(options.get("workers", 1)),
        on_batch=on_batch,
        path=path,
        market=options.get("market") or None,
        batch_size=options.get("batch_size"),
        overwrite=bool(options.get("overwrite", False)),
        requested_by=str(options.get("requested_by", "pipeline")),
    )
    return {
        "job_id": job.pk,
        "status": job.status,
        "files": job.files_total,
        "files_skipped": job.files_skipped,
        **{name: getattr(job, name) for name in job.COUNT_FIELDS},
    }
