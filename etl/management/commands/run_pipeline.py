from __future__ import annotations

import json
from typing import Any

from etl import services
from etl.commands import JsonCommand
from etl.errors import DomainError
from etl.models import PipelineStepRun, RunStatus


class Command(JsonCommand):
    help = "Run the ETL pipeline (every default step, or --steps) and record it in the execution history."

    def add_command_arguments(self, parser) -> None:
        parser.add_argument("--steps", nargs="+", help="step names, e.g. --steps sync validate (or sync,validate)")
        parser.add_argument("--continue-on-failure", action="store_true", help="run later steps after a failure")
        parser.add_argument("--max-minutes", type=float, help="maximum execution time")
        parser.add_argument("--path", help="import step: file or folder under the data root")
        parser.add_argument(
            "--option", action="append", default=[], metavar="KEY=VALUE", help="step option (JSON value or text)"
        )

    def run(self, **options: Any) -> dict[str, Any]:
        """Parse steps and --option values, then one call: services.pipeline_run."""
        step_options: dict[str, Any] = {}
        for item in options["option"]:
            key, sep, raw = item.partition("=")
            if not sep or not key:
                raise DomainError(f"--option {item!r}: expected KEY=VALUE", code="invalid_option")
            try:
                step_options[key] = json.loads(raw)
            except json.JSONDecodeError:
                step_options[key] = raw
        if options["path"]:
            step_options["path"] = options["path"]
        steps = [s for arg in options["steps"] or [] for s in arg.split(",") if s.strip()] or None
        max_minutes = options["max_minutes"]
        self._progress_to = self.stderr if options["json"] else self.stdout
        result = services.pipeline_run(
            steps=steps,
            options=step_options,
            continue_on_failure=options["continue_on_failure"],
            max_seconds=round(max_minutes * 60) if max_minutes else None,
            trigger="command",
            requested_by="command",
            console=not options["json"],
            on_step=self.step_line,
        )
        return result.to_dict()

    def step_line(self, sr: PipelineStepRun) -> None:
        if sr.status == RunStatus.RUNNING:
            self._progress_to.write(f"[{sr.name}] running ...")
            return
        took = f" in {sr.duration_seconds:.1f}s" if sr.duration_seconds is not None else ""
        detail = f": {sr.error}" if sr.error else ""
        scalars = [f"{k}={v}" for k, v in sr.counts.items() if isinstance(v, int | float | str) and v is not False]
        counts = f" ({', '.join(scalars)[:300]})" if scalars else ""
        self._progress_to.write(f"[{sr.name}] {sr.status}{took}{detail}{counts}")

    def render(self, summary: dict[str, Any]) -> None:
        took = summary["duration_seconds"] or 0
        self.stdout.write(f"pipeline run #{summary['run_id']}: {summary['outcome']} in {took:.1f}s")
        for gate in (g for g in summary["gates"] if g["breached"]):
            needs = f"{gate['op']} {gate['threshold']:g}"
            self.stdout.write(f"gate {gate['name']} ({gate['severity']}): {gate['value']} (needs {needs})")
        if summary["error"]:
            self.stdout.write(f"error: {summary['error']}")
