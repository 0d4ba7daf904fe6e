from __future__ import annotations

from typing import Any

from etl import services
from etl.commands import JsonCommand


class Command(JsonCommand):
    help = "Validate symbols (whitespace, case variants, inactive markets, no data, unlinked candles); --fix repairs."

    def add_command_arguments(self, parser) -> None:
        parser.add_argument("--fix", action="store_true", help="repair and record each fix in data_corrections")
        parser.add_argument(
            "--only", nargs="+", choices=services.IssueCode.ALL, help="issue kinds to fix (default: all but no-data)"
        )

    def run(self, **options: Any) -> dict[str, Any]:
        result = services.symbols_validate_cleanup(fix=options["fix"], fixes=options["only"], requested_by="command")
        summary = result.to_dict()
        summary["ok"] = True  # problems found is a report, not a failed command
        return summary

    def render(self, summary: dict[str, Any]) -> None:
        for code, n in summary["counts"].items():
            self.stdout.write(f"{code}: {n} found, {summary['fixed'][code]} fixed")
        for issue in summary["issues"]:
            mark = "fixed" if issue["fixed"] else "open "
            self.stdout.write(f"  [{mark}] {issue['code']}: {issue['ticker']}@{issue['market']} {issue['message']}")
        if summary["run_ref"]:
            self.stdout.write(f"audit trail: data_corrections run_ref={summary['run_ref']}")
