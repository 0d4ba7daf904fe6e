from __future__ import annotations

from typing import Any

from etl import services
from etl.commands import JsonCommand


class Command(JsonCommand):
    help = "Create missing reference data (asset classes, markets, sessions, providers) and validate it."

    def add_command_arguments(self, parser) -> None:
        parser.add_argument("--overwrite", action="store_true", help="reset existing records to the defaults")

    def run(self, **options: Any) -> dict[str, Any]:
        result = services.reference_data_bootstrap(overwrite=options["overwrite"])
        report = services.reference_data_validate()
        return {**result.to_dict(), "validation": report.to_dict()}

    def render(self, summary: dict[str, Any]) -> None:
        self.stdout.write(f"created {summary['total_created']}, updated {summary['total_updated']}")
        for table, n in summary["created"].items():
            self.stdout.write(
                f"  {table}: +{n} created, {summary['updated'][table]} updated, {summary['unchanged'][table]} unchanged"
            )
        for problem in summary["validation"]["problems"]:
            self.stdout.write(f"  [{problem['severity']}] {problem['message']}")
