"""django-q2 entry points of the candle side: ids in, one service call, counts out."""

from __future__ import annotations

from typing import Any

from enrichment.candles.models import BackfillState, FeatureRun
from enrichment.candles.services import backfill, feature_runs, live


def feature_run_execute(run_id: int) -> dict[str, Any]:
    """Calls feature_runs.feature_run_execute on the queued run."""
    return feature_runs.feature_run_execute(run=FeatureRun.objects.get(pk=run_id)).to_dict()


def features_scheduled(market: str | None = None) -> dict[str, Any]:
    """Calls feature_runs.features_scheduled_run (the default schedules point here)."""
    return feature_runs.features_scheduled_run(market=market).to_dict()


def backfill_run(state_id: int) -> dict[str, Any]:
    """Calls backfill.backfill_run on the backfill state."""
    return backfill.backfill_run(state=BackfillState.objects.get(pk=state_id)).to_dict()


def live_poll(markets: list[str] | None = None) -> dict[str, Any]:
    """Calls live.live_poll (the "live: poll" schedule points here, every minute)."""
    return live.live_poll(markets=markets).to_dict()
