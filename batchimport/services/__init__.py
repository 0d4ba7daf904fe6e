"""The import's services: every door (admin, API, command, task) calls these."""

from batchimport.services.jobs import (
    backoff_minutes,
    dead_letter_resubmit,
    file_claim,
    files_claim,
    group_limit,
    import_job_cancel,
    import_job_create,
    import_job_retry,
    import_job_start,
    import_job_submit,
    import_job_work,
    job_finish,
    market_key_parse,
    running_import_exists,
    sla_check,
)
from batchimport.services.loader import FileResult, GroupResult, file_load, files_load, fingerprint
from batchimport.services.orphans import SweepResult, orphaned_files_requeue
from batchimport.services.paths import path_resolve, upload_store
from batchimport.services.pipeline import import_step
from batchimport.services.schedules import (
    import_schedule_create,
    import_schedule_delete,
    import_schedule_get,
    import_schedule_request,
    scheduled_import_run,
)

__all__ = [
    "FileResult",
    "GroupResult",
    "SweepResult",
    "backoff_minutes",
    "dead_letter_resubmit",
    "file_claim",
    "files_claim",
    "files_load",
    "file_load",
    "fingerprint",
    "group_limit",
    "import_job_cancel",
    "import_job_create",
    "import_job_retry",
    "import_job_start",
    "import_job_submit",
    "import_job_work",
    "import_schedule_create",
    "import_schedule_delete",
    "import_schedule_get",
    "import_schedule_request",
    "import_step",
    "job_finish",
    "market_key_parse",
    "orphaned_files_requeue",
    "path_resolve",
    "running_import_exists",
    "scheduled_import_run",
    "sla_check",
    "upload_store",
]
