"""Write a realistic scraper folder (BIST/, Crypto/, NASDAQ/, NYSE/) in every layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchimport.samples import write_sample_folder
from etl.commands import JsonCommand


class Command(JsonCommand):
    help = "Generate sample scraper CSV files in every layout, with a known share of defective rows."

    def add_command_arguments(self, parser) -> None:
        parser.add_argument("dir", help="folder to write into (created if missing)")
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--tickers", type=int, default=4, help="files per market")
        parser.add_argument("--days", type=int, default=250, help="daily bars per file")
        parser.add_argument("--defect-every", type=int, default=50, help="one defective row in every N (0: none)")

    def run(self, **options: Any) -> dict[str, Any]:
        summary = write_sample_folder(
            Path(options["dir"]),
            seed=options["seed"],
            tickers=options["tickers"],
            days=options["days"],
            defect_every=options["defect_every"],
        )
        return {
            "dir": str(summary.root),
            "files": len(summary.files),
            "rows": summary.rows,
            "defective_rows": summary.defects,
            "rows_by_market": summary.by_market(),
        }
