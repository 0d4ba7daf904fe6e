"""python manage.py backfill [--symbol BTC] [--timeframe 1h] [--source market_data] [--from 2024-01-01] [--to ...]"""

from __future__ import annotations

from typing import Any

from enrichment.candles.local_source import MARKET_DATA_SOURCE
from enrichment.candles.services.backfill import backfill_start
from enrichment.candles.services.series_refs import symbols_from_params, timeframe_parse
from etl.commands import JsonCommand
from etl.progress import ProgressReporter
from etl.timeparse import moment_parse


class Command(JsonCommand):
    help = "Backfill market_data_v2 from a candle source in resumable chunks, then compute features."

    def add_command_arguments(self, parser) -> None:
        parser.add_argument("--symbol", action="append", default=[], help="ticker, TICKER@MARKET or id; repeatable")
        parser.add_argument("--timeframe", action="append", default=[], help="e.g. 15m, 1h, 1d; repeatable")
        parser.add_argument("--source", default=MARKET_DATA_SOURCE, help="candle source code (default: market_data)")
        parser.add_argument("--from", dest="start", help="ISO date/time, UTC (default: the local data's start)")
        parser.add_argument("--to", dest="end", help="ISO date/time, UTC, exclusive (default: the local data's end)")
        parser.add_argument("--chunk-bars", type=int, default=1000, help="bars per chunk (default 1000)")

    def run(self, **options: Any) -> dict[str, Any]:
        """Calls backfill_start."""
        for tf in options["timeframe"]:
            timeframe_parse(tf)
        with ProgressReporter(label="backfill", bar=not options["json"]) as progress:
            return backfill_start(
                symbols=symbols_from_params(options["symbol"]) or None,
                timeframes=options["timeframe"] or None,
                source=options["source"],
                start=moment_parse(options["start"], field="--from"),
                end=moment_parse(options["end"], field="--to"),
                chunk_bars=options["chunk_bars"],
                progress=progress,
            )
