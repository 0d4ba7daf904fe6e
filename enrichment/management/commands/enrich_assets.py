"""python manage.py enrich_assets [--source CODE] [--symbols T[@M] ...] [--all | --stale-days N] [--discover]
[--resubmit-dead-letters] [--json]"""

from __future__ import annotations

from typing import Any

from enrichment.assets.services.dead_letters import enrichment_dead_letters_resubmit
from enrichment.assets.services.discovery import symbols_discover
from enrichment.assets.services.enrich import assets_enrich
from enrichment.assets.services.enrich_options import EnrichOptions
from etl.commands import JsonCommand


class Command(JsonCommand):
    help = "Enrich symbol metadata from the providers (never-enriched symbols unless told otherwise)."

    def add_command_arguments(self, parser) -> None:
        parser.add_argument(
            "--source",
            action="append",
            dest="sources",
            metavar="CODE",
            help="provider code or LOCAL; repeat for several (default: every usable one)",
        )
        parser.add_argument("--symbols", nargs="+", default=[], metavar="TICKER[@MARKET]")
        parser.add_argument("--stale-days", type=int, help="also re-enrich symbols enriched more than N days ago")
        parser.add_argument("--all", action="store_true", help="every active symbol")
        parser.add_argument("--overwrite", action="store_true", help="replace values that are already set")
        parser.add_argument("--concurrency", type=int, default=3)
        parser.add_argument("--batch-size", type=int, default=50)
        parser.add_argument("--rate-limit-delay", type=float, default=0.0, help="seconds between symbols per worker")
        parser.add_argument("--retries", type=int, default=3, help="attempts per provider call")
        parser.add_argument("--timeout", type=float, help="seconds per provider call")
        parser.add_argument("--discover", action="store_true", help="first create symbols listed by Binance")
        parser.add_argument(
            "--resubmit-dead-letters",
            action="store_true",
            help="only retry the symbols in the enrichment dead-letter table",
        )

    def run(self, **o: Any) -> dict[str, Any]:
        """Calls assets_enrich (after symbols_discover with --discover), or with
        --resubmit-dead-letters enrichment_dead_letters_resubmit instead."""
        if o["resubmit_dead_letters"]:
            return enrichment_dead_letters_resubmit(requested_by="command").to_dict()
        summary: dict[str, Any] = {}
        if o["discover"]:
            summary["discovery"] = symbols_discover().to_dict()
        options = EnrichOptions.from_dict(
            {
                "sources": o["sources"],
                "symbols": o["symbols"],
                "selection": "all" if o["all"] else "stale" if o["stale_days"] else "never",
                "stale_days": o["stale_days"] or 30,
                "overwrite": o["overwrite"],
                "concurrency": o["concurrency"],
                "batch_size": o["batch_size"],
                "rate_limit_delay": o["rate_limit_delay"],
                "max_retries": o["retries"],
                "timeout": o["timeout"],
            }
        )
        result = assets_enrich(options=options, requested_by="command", bar=not o["json"])
        return {**summary, **result.to_dict(details=0 if not o["symbols"] else 50)}

    def render(self, summary: dict[str, Any]) -> None:
        if "resubmitted" in summary:
            self.stdout.write(
                f"resubmitted {summary['resubmitted']}: {summary['resolved']} resolved, "
                f"{summary['still_failing']} still failing (runs {summary['run_ids']})"
            )
            return
        if "discovery" in summary:
            d = summary["discovery"]
            self.stdout.write(f"discovered {d['listed']} listed, {d['created']} new symbols")
        self.stdout.write(
            f"run {summary['run_id']}: {summary['total']} symbols, {summary['enriched']} enriched, "
            f"{summary['partial']} partial, {summary['failed']} failed, {summary['dead_lettered']} dead-lettered"
        )
        self.stdout.write(f"sources: {', '.join(summary['sources'])}")
        for s in summary.get("symbols", []):
            self.stdout.write(f"  {s['symbol']}: {s['outcome']} quality {s['quality']['score']}")
