"""django-q2 entry points: ids and flags in, one service call, counts out."""

from __future__ import annotations

from typing import Any

from etl import services
from etl.services.partitions import partitions_maintain


def reference_data_bootstrap(overwrite: bool = False) -> dict[str, Any]:
    return services.reference_data_bootstrap(overwrite=overwrite).to_dict()


def retention_prune(days: int | None = None) -> dict[str, Any]:
    result = services.retention_prune(days=days)
    return {"days": result.days, "deleted": result.deleted}


def candle_partitions_maintain() -> dict[str, Any]:
    return partitions_maintain().to_dict()


def symbols_sync(**options: Any) -> dict[str, Any]:
    result = services.symbols_sync(**options).to_dict()
    result.pop("planned")
    return result


def pipeline_execute(run_id: int) -> str:
    return services.pipeline_execute(run_id=run_id).status


def pipeline_scheduled(**schedule: Any) -> str:
    """Fired by a django-q2 schedule that `pipeline_schedule` wrote; its kwargs are
    `pipeline_scheduled_run`'s."""
    return services.pipeline_scheduled_run(**schedule).status


def integrity_snapshot() -> int:
    return services.integrity_snapshot_take()
