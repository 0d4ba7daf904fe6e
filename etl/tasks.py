"""django-q2 entry points: ids and flags in, one service call, counts out."""

from __future__ import annotations

from typing import Any

from etl import services


def reference_data_bootstrap(overwrite: bool = False) -> dict[str, Any]:
    return services.reference_data_bootstrap(overwrite=overwrite).to_dict()


def retention_prune(days: int | None = None) -> dict[str, Any]:
    result = services.retention_prune(days=days)
    return {"days": result.days, "deleted": result.deleted}
