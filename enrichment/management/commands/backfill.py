"""python manage.py backfill [--symbol BTC] [--timeframe 1h] [--source market_data] [--from 2024-01-01] [--to ...]"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from django.utils.dateparse import parse_date, parse_datetime

from enrichment.services.backfill import backfill_start
from enrichment.services.features import parse_timeframe, symbols_from_params
from enrichment.sources import LOCAL
from etl.commands import JsonCommand
from etl.errors import DomainError
from etl.progress import ProgressReporter


def parse_moment(value: str | None, flag: str) -> datetime | None:
    """ISO date or date-time; naive means UTC."""
    if not value:
        return None
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise DomainError(f"{flag} {value!r}: expected an ISO date (2024-01-31) or date-time", code="bad_date")
        moment = datetime.combine(day, time())
    if moment.tzinfo is None:
        from datetime import UTC

        moment = moment.replace(tzinfo=UTC)
    return moment


class Command(JsonCommand):
    help = "Backfill market_data_v2 from a candle source in resumable chunks, then compute features."

    def add_command_arguments(self, parser) -> None:
        parser.add_argument("--symbol", action="append", default=[], help="ticker, TICKER@MARKET or id; repeatable")
        parser.add_argument("--timeframe", action="append", default=[], help="e.g. 15m, 1h, 1d; repeatable")
        parser.add_argument("--source", default=LOCAL, help="candle source code (default: market_data)")
        parser.add_argument("--from", dest="start", help="ISO date/time, UTC (default: the local data's start)")
        parser.add_argument("--to", dest="end", help="ISO date/time, UTC, exclusive (default: the local data's end)")
        parser.add_argument("--chunk-bars", type=int, default=1000, help="bars per chunk (default 1000)")

    def run(self, **options: Any) -> dict[str, Any]:
        for tf in options["timeframe"]:
            parse_timeframe(tf)
        with ProgressReporter(label="backfill", bar=not options["json"]) as progress:
            return backfill_start(
                symbols=symbols_from_params(options["symbol"]) or None,
                timeframes=options["timeframe"] or None,
                source=options["source"],
                start=parse_moment(options["start"], "--from"),
                end=parse_moment(options["end"], "--to"),
                chunk_bars=options["chunk_bars"],
                progress=progress,
            )
