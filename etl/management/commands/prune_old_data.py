from __future__ import annotations

from typing import Any

from etl.commands import JsonCommand
from etl.services import retention_prune


class Command(JsonCommand):
    help = "Delete logs, task results and finished backups older than --days (default RETENTION_DAYS)."

    def add_command_arguments(self, parser) -> None:
        parser.add_argument("--days", type=int, default=None)

    def run(self, **options: Any) -> dict[str, Any]:
        result = retention_prune(days=options["days"])
        return {"days": result.days, "deleted": result.deleted, "total": result.total}
