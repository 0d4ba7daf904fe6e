"""correct_asset_classes analyze|preview|execute|validate|rollback|status|cancel [options]."""

from __future__ import annotations

from typing import Any

from corrections import selectors, services
from corrections.models import CorrectionRun, Phase
from etl.commands import JsonCommand
from etl.errors import DomainError

ACTIONS = ("analyze", "preview", "execute", "validate", "rollback", "status", "cancel")


def _run(run_id: int | None, *, phases: tuple[str, ...] = ()) -> CorrectionRun:
    if run_id is None:
        run = CorrectionRun.objects.filter(phase__in=phases).first() if phases else None
        if run is None:
            raise DomainError("--run: give the id of a correction run", code="run_required")
        return run
    try:
        return CorrectionRun.objects.get(pk=run_id)
    except CorrectionRun.DoesNotExist:
        raise DomainError(f"--run: no correction run {run_id}", code="not_found") from None


class Command(JsonCommand):
    help = "Make market_data.asset_class agree with the symbols: analyze, preview, execute, validate, roll back."

    def add_command_arguments(self, parser) -> None:
        parser.add_argument("action", choices=ACTIONS)
        parser.add_argument("--run", type=int, help="correction run id (execute resumes it; rollback needs it)")
        parser.add_argument("--only-null", action="store_true", help="change only NULL asset classes")
        parser.add_argument(
            "--overwrite-mismatched", action="store_true", help="also overwrite values that differ from the symbol's"
        )
        parser.add_argument("--batch-size", type=int, default=50_000)
        parser.add_argument("--validate-each-batch", action="store_true")
        parser.add_argument("--reason", default="", help="why (rollback)")
        parser.add_argument("--force", action="store_true", help="rollback: also restore rows changed after the run")
        parser.add_argument("--page", type=int, default=1)
        parser.add_argument("--page-size", type=int, default=50)
        parser.add_argument("--samples", type=int, default=5, help="sample candles per category (analyze)")

    def run(self, **o: Any) -> dict[str, Any]:
        """Each sub-command calls its one service: analyze → correction_run_create, preview →
        correction_preview, execute → correction_execute, validate → correction_validate,
        rollback → correction_rollback, cancel → correction_cancel; status reads a selector."""
        action = o["action"]
        options = {
            "only_null": o["only_null"],
            "overwrite_mismatched": o["overwrite_mismatched"],
            "batch_size": o["batch_size"],
            "validate_each_batch": o["validate_each_batch"],
        }
        if action == "analyze":
            run = services.correction_run_create(requested_by="command", sample_size=o["samples"], **options)
            return {"run_id": run.pk, **run.analyze_report}
        if action == "preview":
            run = _run(o["run"]) if o["run"] else None
            scope = (
                None if run else selectors.scope_for(**{k: options[k] for k in ("only_null", "overwrite_mismatched")})
            )
            page = services.correction_preview(run=run, scope=scope, page=o["page"], page_size=o["page_size"])
            return {"run_id": run.pk if run else None, **page.to_dict()}
        if action == "execute":
            run = _run(o["run"]) if o["run"] else services.correction_run_create(requested_by="command", **options)
            return services.correction_execute(run=run, bar=not o["json"]).to_dict()
        if action == "validate":
            run = _run(o["run"], phases=(Phase.EXECUTED, Phase.VALIDATED))
            result = services.correction_validate(run=run)
            return {**result.to_dict(), "ok": result.ok, **({} if result.ok else {"error": "validation failed"})}
        if action == "rollback":
            run = _run(o["run"])
            return services.correction_rollback(
                run=run, reason=o["reason"], requested_by="command", force=o["force"]
            ).to_dict()
        if action == "cancel":
            return selectors.correction_status(run=services.correction_cancel(run=_run(o["run"])))
        return selectors.correction_status(run=_run(o["run"], phases=tuple(Phase.values)))

    def render(self, summary: dict[str, Any]) -> None:
        totals = summary.get("totals")
        if totals:
            self.stdout.write(f"run {summary['run_id']}: {totals['total']} candles")
            for name in ("correct", "null", "empty", "mismatched", "orphan", "unclassified", "needing_correction"):
                self.stdout.write(f"  {name:<20}{totals[name]:>12,}")
            self.stdout.write(f"  quality score {summary['quality_score']} %, orphans {summary['orphan_percent']} %")
            for row in summary["by_market"]:
                self.stdout.write(
                    f"  {row['market']:<14} total {row['total']:>10,}  null {row['null']:>8,}  empty {row['empty']:>8,}"
                    f"  mismatched {row['mismatched']:>8,}  orphan {row['orphan']:>8,}"
                )
            for warning in summary["warnings"]:
                self.stdout.write(self.style.WARNING(f"warning: {warning}"))
            return
        if "groups" in summary and isinstance(summary["groups"], list):
            self.stdout.write(
                f"{summary['total_rows']:,} candles in {summary['total_groups']:,} groups "
                f"(scope {summary['scope']}, page {summary['page']} of {summary['pages']})"
            )
            for g in summary["groups"]:
                change = f"{g['from_value']!r:>16} -> {g['to_value']:<14}"
                self.stdout.write(f"  {g['ticker']:<12}{g['market']:<14}{change}{g['row_count']:>10,}")
            return
        super().render(summary)
