"""python manage.py live_poll [--market BINANCE] [--json]"""

from __future__ import annotations

from typing import Any

from enrichment.candles.services.live import live_poll
from etl.commands import JsonCommand


class Command(JsonCommand):
    help = "Poll the live markets once: fetch the bars that closed since the last stored one, compute features."

    def add_command_arguments(self, parser) -> None:
        parser.add_argument("--market", action="append", default=[], help="market code; repeatable (default: all)")

    def run(self, **options: Any) -> dict[str, Any]:
        """Calls live_poll."""
        result = live_poll(markets=options["market"] or None).to_dict()
        return {"ok": not result["errors"], **result}
