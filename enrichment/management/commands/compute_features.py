"""python manage.py compute_features [--symbol BTC] [--timeframe 1h] [--full] [--json]"""

from __future__ import annotations

from typing import Any

from enrichment.candles.services.feature_runs import feature_run_create, feature_run_execute
from etl.commands import JsonCommand


class Command(JsonCommand):
    help = "Copy new/changed market_data candles into market_data_v2 and compute features (incrementally)."

    def add_command_arguments(self, parser) -> None:
        parser.add_argument("--symbol", action="append", default=[], help="ticker, TICKER@MARKET or id; repeatable")
        parser.add_argument("--timeframe", action="append", default=[], help="e.g. 15m, 1h, 1d; repeatable")
        parser.add_argument("--full", action="store_true", help="recompute every row, not only the stale tail")

    def run(self, **options: Any) -> dict[str, Any]:
        """Calls feature_run_create (unknown symbols fail before a run is recorded), then feature_run_execute."""
        run = feature_run_create(
            symbols=options["symbol"], timeframes=options["timeframe"], full=options["full"], requested_by="command"
        )
        result = feature_run_execute(run=run, progress_bar=not options["json"]).to_dict()
        return {"ok": not (result["failed"] and not result["rows_computed"]), **result}
