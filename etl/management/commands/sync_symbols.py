from __future__ import annotations

from typing import Any

from etl import services
from etl.commands import JsonCommand
from etl.progress import ProgressReporter


class Command(JsonCommand):
    help = "Create a symbol for every (ticker, market) in market_data and link every candle to it."

    def add_command_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="list what would be created; write nothing")
        parser.add_argument("--batch-size", type=int, default=1000, help="(ticker, market) pairs per transaction")
        parser.add_argument("--asset-class", action="append", dest="asset_classes", help="e.g. CRYPTO, STOCK")
        parser.add_argument("--venue", action="append", dest="venues", help="market code, e.g. BINANCE, NASDAQ")
        parser.add_argument(
            "--no-skip-existing",
            action="store_false",
            dest="skip_existing",
            help="also re-read linked candles: fill empty fields of existing symbols, relink strays",
        )
        parser.add_argument("--max-minutes", type=float, help="stop between batches after this long")

    def run(self, **options: Any) -> dict[str, Any]:
        """services.symbols_sync, with a progress bar on a terminal."""
        max_minutes = options["max_minutes"]
        with ProgressReporter(label="linking candles", bar=not options["json"]) as progress:
            result = services.symbols_sync(
                batch_size=options["batch_size"],
                asset_classes=options["asset_classes"],
                venues=options["venues"],
                skip_existing=options["skip_existing"],
                max_seconds=max_minutes * 60 if max_minutes else None,
                dry_run=options["dry_run"],
                progress=progress,
            )
        return result.to_dict()

    def render(self, summary: dict[str, Any]) -> None:
        planned = summary.pop("planned")
        unresolved = summary.pop("unresolved")
        for key, value in summary.items():
            self.stdout.write(f"{key}: {value}")
        if summary["dry_run"]:
            self.stdout.write(f"would create {len(planned)} symbol(s):")
            for p in planned:
                self.stdout.write(
                    f"  {p['ticker']:<16} {p['market']:<13} {p['asset_class'] or '-':<13} "
                    f"{p['base_currency'] or '-'}/{p['quote_currency'] or '-'}  confidence {p['confidence']:.2f}"
                    f"  candles {p['candles']}  ({p['reason']})"
                )
        for u in unresolved:
            self.stdout.write(f"  unresolved: {u['ticker']}@{u['market']} ({u['candles']} candles): {u['reason']}")
