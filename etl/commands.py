"""Base for every management command: a `--json` flag that prints one JSON
summary on stdout, domain errors printed as one line with a non-zero exit."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from etl.errors import DomainError


class JsonCommand(BaseCommand):
    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
        self.add_command_arguments(parser)

    def add_command_arguments(self, parser) -> None:
        """Subclasses add their own arguments here."""

    def handle(self, *args: Any, **options: Any) -> None:
        as_json = options["json"]
        try:
            summary = self.run(**options)
        except DomainError as exc:
            if as_json:
                self.stdout.write(json.dumps({"ok": False, "error": exc.message, "code": exc.code}))
            raise CommandError(exc.message, returncode=1 if exc.status_code != 409 else 3) from None
        ok = summary.pop("ok", True) if isinstance(summary, dict) else True
        if as_json:
            self.stdout.write(json.dumps({"ok": ok, **summary}, default=str))
        else:
            self.render(summary)
        if not ok:
            raise CommandError(summary.get("error") or "failed", returncode=1)

    def run(self, **options: Any) -> dict[str, Any]:
        raise NotImplementedError

    def render(self, summary: dict[str, Any]) -> None:
        """Human output; by default one `key: value` line per entry."""
        for key, value in summary.items():
            self.stdout.write(f"{key}: {value}")
