"""django-q2 entry points: ids in, one service call, counts out."""

from __future__ import annotations

from typing import Any

from corrections import services
from corrections.models import CorrectionRun


def correction_execute(run_id: int) -> dict[str, Any]:
    return services.correction_execute(run=CorrectionRun.objects.get(pk=run_id), queued=True).to_dict()


def correction_rollback(run_id: int, reason: str, requested_by: str, force: bool = False) -> dict[str, Any]:
    run = CorrectionRun.objects.get(pk=run_id)
    return services.correction_rollback(run=run, reason=reason, requested_by=requested_by, force=force).to_dict()


def correct_scheduled(overwrite_mismatched: bool = False) -> dict[str, Any]:
    """For a django-q2 schedule: a whole analyze + execute + validate pass."""
    return services.correct_step(options={"overwrite_mismatched": overwrite_mismatched, "requested_by": "schedule"})


def correction_interrupted_sweep() -> int:
    """For the every-minute schedule: runs whose process died are marked failed with the reason."""
    return len(services.correction_interrupted_sweep().runs_failed)
