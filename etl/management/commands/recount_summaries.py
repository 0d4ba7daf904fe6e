from __future__ import annotations

from typing import Any

from etl.commands import JsonCommand
from etl.services import summaries


class Command(JsonCommand):
    help = "Recount the integrity summaries from the big tables; report drift and repair it."

    def add_command_arguments(self, parser) -> None:
        parser.add_argument("--source", action="append", dest="sources", help="e.g. candles, symbols (default: all)")
        parser.add_argument("--no-repair", action="store_false", dest="repair", help="report drift, change nothing")
        parser.add_argument("--queue", action="store_true", help="hand the recount to the workers")

    def run(self, **options: Any) -> dict[str, Any]:
        """services.summary_recount (or summary_recount_queue), with a progress bar on a terminal."""
        kwargs = {"requested_by": "command", "repair": options["repair"], "sources": options["sources"]}
        if options["queue"]:
            run = summaries.summary_recount_queue(**kwargs)
            return {"run_id": run.pk, "status": run.status}
        result = summaries.summary_recount(**kwargs, bar=not options["json"])
        return {"ok": result.status == "succeeded", **result.to_dict()}

    def render(self, summary: dict[str, Any]) -> None:
        self.stdout.write(f"summary recount #{summary['run_id']}: {summary['status']}")
        for name, figures in summary.get("sources", {}).items():
            self.stdout.write(
                f"  {name:<12} {figures['compared']:>8} values  {figures['drift']:>5} drifted"
                f"  {figures['repaired']:>5} repaired  {figures['seconds']:>8.2f} s"
            )
        for d in summary.get("drift", []):
            self.stdout.write(
                f"  drift: {d['source']} {d['market']} {d['metric']} kept {d['kept']}, counted {d['recounted']}"
            )
