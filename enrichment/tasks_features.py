"""django-q2 entry points of the feature side: ids in, one service call, counts out."""

from __future__ import annotations

from typing import Any

from django.db import connection

from enrichment.models.candles import FeatureRun
from enrichment.services import features as service
from etl.models import Symbol


def feature_run_execute(run_id: int) -> dict[str, Any]:
    return service.feature_run_execute(run=FeatureRun.objects.get(pk=run_id)).to_dict()


def features_scheduled(market: str | None = None) -> dict[str, Any]:
    """A scheduled run for one market's symbols. A session-level advisory lock makes a run
    that starts while the previous one for the same market still works skip itself."""
    key = f"features_schedule:{market or 'all'}"
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [key])
        if not cur.fetchone()[0]:
            return {"skipped": True, "reason": "the previous scheduled run is still going"}
        try:
            symbols = [f"{s.pk}" for s in Symbol.objects.filter(market__code=market)] if market else []
            if market and not symbols:
                return {"skipped": True, "reason": f"no symbols on {market}"}
            run = service.feature_run_create(params={"symbols": symbols}, requested_by="schedule")
            return service.feature_run_execute(run=run).to_dict()
        finally:
            cur.execute("SELECT pg_advisory_unlock(hashtext(%s))", [key])


def backfill_run(state_id: int) -> dict[str, Any]:
    from enrichment.models.candles import BackfillState
    from enrichment.services.backfill import backfill_run as run

    return run(state=BackfillState.objects.get(pk=state_id)).to_dict()
