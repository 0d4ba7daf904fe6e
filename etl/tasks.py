"""django-q2 entry points: ids and flags in, one service call, counts out."""

from __future__ import annotations

from typing import Any

from etl import services


def reference_data_bootstrap(overwrite: bool = False) -> dict[str, Any]:
    return services.reference_data_bootstrap(overwrite=overwrite).to_dict()


def retention_prune(days: int | None = None) -> dict[str, Any]:
    result = services.retention_prune(days=days)
    return {"days": result.days, "deleted": result.deleted}


def symbols_sync(**options: Any) -> dict[str, Any]:
    result = services.symbols_sync(**options).to_dict()
    result.pop("planned")
    return result


def pipeline_execute(run_id: int) -> str:
    return services.pipeline_execute(run_id=run_id).status


def pipeline_scheduled(
    *,
    schedule_name: str,
    cron: str,
    tz: str,
    steps: list[str] | None = None,
    options: dict[str, Any] | None = None,
    continue_on_failure: bool = True,
    max_seconds: int | None = None,
) -> str:
    """Fired by the django-q2 schedule. First re-aims the schedule at the next
    occurrence in its own zone (django-q2 computes cron in UTC), then runs;
    a run already in progress makes this one a logged, recorded skip."""
    from django_q.models import Schedule

    Schedule.objects.filter(name=schedule_name).update(next_run=services.next_occurrence(cron, tz))
    return services.pipeline_run(
        steps=steps,
        options=options,
        continue_on_failure=continue_on_failure,
        max_seconds=max_seconds,
        trigger="schedule",
        requested_by=f"schedule:{schedule_name}",
    ).status


def integrity_snapshot() -> int:
    return services.integrity_snapshot_take()
