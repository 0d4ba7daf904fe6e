from __future__ import annotations

from typing import Any

from etl import selectors
from etl.commands import JsonCommand


class Command(JsonCommand):
    help = "Data-integrity status: candles without a symbol, coverage, consistency, enrichment, quality."

    def run(self, **options: Any) -> dict[str, Any]:
        return selectors.integrity_status()

    def render(self, summary: dict[str, Any]) -> None:
        cols = {
            "candles": "candles",
            "candles_without_symbol": "no symbol",
            "symbol_coverage": "coverage %",
            "asset_class_consistency": "class ok %",
            "enrichment_coverage": "enriched %",
            "overall_quality": "quality",
        }
        self.stdout.write(f"data integrity: {summary['status']}")
        self.stdout.write(f"{'market':<14}" + "".join(f"{c:>12}" for c in cols.values()))
        rows = [*summary["markets"].items(), ("ALL", summary["overall"])]
        for name, ind in rows:
            cells = "".join(f"{'-' if ind[c] is None else ind[c]:>12}" for c in cols)
            self.stdout.write(f"{name:<14}{cells}")
        for check in summary["checks"]:
            mark = "ok " if check["ok"] else "!! "
            self.stdout.write(f"{mark}{check['name']} = {check['value']} (goal {check['goal']})")
