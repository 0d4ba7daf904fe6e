"""What a door says to name a series: symbol references and timeframes, checked once."""

from __future__ import annotations

from django.utils.translation import gettext

from enrichment.candles.feature_list import timeframe_seconds
from etl.errors import DomainError
from etl.models import Symbol


def timeframe_parse(timeframe: str) -> int:
    """The timeframe's length in seconds; DomainError (bad_timeframe) for anything else."""
    try:
        return timeframe_seconds(timeframe)
    except ValueError:
        raise DomainError(
            gettext("unknown timeframe %(timeframe)s: use e.g. 1m, 15m, 1h, 4h, 1d, 1w")
            % {"timeframe": repr(timeframe)},
            code="bad_timeframe",
        ) from None


def symbol_resolve(ref: str) -> Symbol:
    """'BTC', 'BTC@BINANCE' or a numeric id -> the symbol; DomainError when unknown or ambiguous."""
    ref = (ref or "").strip()
    qs = Symbol.objects.select_related("market")
    if ref.isascii() and ref.isdigit():  # "¹" is a digit to isdigit() and not a number to int()
        found = list(qs.filter(pk=int(ref)))
    elif "@" in ref:
        ticker, market = ref.split("@", 1)
        found = list(qs.filter(ticker__iexact=ticker, market__code__iexact=market))
    else:
        found = list(qs.filter(ticker__iexact=ref))
    if not found:
        raise DomainError(
            gettext("unknown symbol %(symbol)s") % {"symbol": repr(ref)}, code="unknown_symbol", status_code=404
        )
    if len(found) > 1:
        markets = ", ".join(f"{s.ticker}@{s.market.code}" for s in found)
        raise DomainError(
            gettext("symbol %(symbol)s is ambiguous: use one of %(choices)s")
            % {"symbol": repr(ref), "choices": markets},
            code="ambiguous_symbol",
        )
    return found[0]


def symbols_from_params(refs: list[str]) -> list[Symbol]:
    return [symbol_resolve(r) for r in refs]
