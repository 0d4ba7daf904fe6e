"""Writes and runs of the core. One module per sub-domain; import from here."""

from etl.services.integrity import integrity_snapshot_take  # noqa: F401,E402
from etl.services.pipeline import (  # noqa: F401, E402
    PipelineResult,
    ScheduleResult,
    StepOutcome,
    pipeline_cancel,
    pipeline_execute,
    pipeline_in_progress,
    pipeline_plan,
    pipeline_queue,
    pipeline_rerun,
    pipeline_run,
    pipeline_schedule,
    pipeline_scheduled_run,
)
from etl.services.reference import (  # noqa: F401
    BootstrapResult,
    Problem,
    ValidationReport,
    bootstrap_status,
    bootstrap_step,
    reference_data_bootstrap,
    reference_data_bootstrap_queue,
    reference_data_validate,
)
from etl.services.retention import PruneResult, retention_prune  # noqa: F401,E402
from etl.services.symbols import (  # noqa: F401
    IssueCode,
    SymbolIssue,
    SymbolValidationResult,
    SyncPlanEntry,
    SyncResult,
    candles_without_symbol_count,
    symbols_sync,
    symbols_sync_queue,
    symbols_sync_step,
    symbols_validate_cleanup,
    symbols_validate_step,
)
