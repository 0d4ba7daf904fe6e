"""django-q2 entry points: ids and flags in, one service call, counts out."""

from __future__ import annotations

from typing import Any

from etl import events, services, summaries
from etl.models import SummaryRecount
from etl.services import summaries as summary_services
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


def summaries_fold() -> dict[str, Any]:
    result = summaries.summaries_fold(vacuum=True)
    return {
        "folded": result.folded,
        "moved": result.moved,
        "values": result.values,
        "pairs": result.pairs,
        "tallies": result.tallies,
    }


def metrics_fold() -> int:
    """The `metrics-fold` schedule: the metric deltas into their totals (etl.events)."""
    return events.metrics_fold()


def summary_recount(repair: bool = True) -> dict[str, Any]:
    """The scheduled recount: a new run of every source."""
    result = summary_services.summary_recount(requested_by="schedule", repair=repair)
    return {"run_id": result.run_id, "status": result.status, "drift": result.drift_count}


def summary_recount_execute(run_id: int) -> str:
    """A queued recount (admin, command --queue); a run already finished is left as it is."""
    run = SummaryRecount.objects.get(pk=run_id)
    if run.status != "queued":
        return run.status
    return summary_services.summary_recount(run=run).status
