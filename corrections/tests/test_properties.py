"""Property tests over random candles and symbols: analyze agrees with a
direct count, and execute followed by rollback leaves market_data identical."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corrections import services
from corrections.models import Scope
from corrections.tests.conftest import market_data_checksum
from etl.models import AssetClass, Market, MarketData, Symbol

pytestmark = pytest.mark.django_db

MARKETS = ["BIST", "NASDAQ", "NYSE", "BINANCE"]
CLASSES = ["STOCK_BIST", "STOCK_NASDAQ", "CRYPTO", "ETF"]
VALUES = [None, "", "  ", "BIST", "CRYPTO", "NASDAQ", *CLASSES]

symbols_st = st.lists(
    st.tuples(st.sampled_from(["A", "B", "C", "D"]), st.sampled_from(MARKETS), st.sampled_from([None, *CLASSES])),
    max_size=6,
    unique_by=lambda s: (s[0], s[1]),
)
candles_st = st.lists(st.tuples(st.integers(min_value=-1, max_value=5), st.sampled_from(VALUES)), max_size=60)
PROFILE = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def build(symbol_specs, candle_specs) -> list[tuple[MarketData, Symbol | None]]:
    classes = {c.code: c for c in AssetClass.objects.all()}
    markets = {m.code: m for m in Market.objects.all()}
    symbols = Symbol.objects.bulk_create(
        [Symbol(ticker=t, market=markets[m], asset_class=classes.get(c) if c else None) for t, m, c in symbol_specs]
    )
    start = datetime(2020, 1, 1, tzinfo=UTC)
    rows = []
    for n, (index, value) in enumerate(candle_specs):
        symbol = symbols[index] if 0 <= index < len(symbols) else None
        ticker, market = (symbol.ticker, symbol.market.code) if symbol else ("ORPH", "BIST")
        rows.append(
            MarketData(
                ticker=ticker,
                market=market,
                timeframe="1d",
                ts=start + timedelta(days=n),
                open=Decimal(1),
                high=Decimal(2),
                low=Decimal("0.5"),
                close=Decimal("1.5"),
                volume=Decimal(100 + n),
                asset_class=value,
                symbol=symbol,
            )
        )
    MarketData.objects.bulk_create(rows)
    return [(row, row.symbol) for row in rows]


def expected_counts(built) -> dict[str, int]:
    counts = dict.fromkeys(("total", "null", "empty", "mismatched", "correct", "orphan", "unclassified"), 0)
    for row, symbol in built:
        counts["total"] += 1
        if symbol is None:
            counts["orphan"] += 1
        elif symbol.asset_class is None:
            counts["unclassified"] += 1
        elif row.asset_class is None:
            counts["null"] += 1
        elif row.asset_class.strip() == "":
            counts["empty"] += 1
        elif row.asset_class != symbol.asset_class.code:
            counts["mismatched"] += 1
        else:
            counts["correct"] += 1
    return counts


@PROFILE
@given(symbol_specs=symbols_st, candle_specs=candles_st)
def test_analyze_counts_match_a_direct_count(reference_data, symbol_specs, candle_specs):
    with transaction.atomic():
        built = build(symbol_specs, candle_specs)
        report = services.correction_analyze(sample_size=1)
        totals = report.to_dict()["totals"]
        totals.pop("needing_correction")
        assert totals == expected_counts(built)
        assert sum(r["total"] for r in report.by_market) == len(built)
        assert sum(r["total"] for r in report.by_asset_class) == len(built)
        transaction.set_rollback(True)


@PROFILE
@given(
    symbol_specs=symbols_st,
    candle_specs=candles_st,
    scope=st.sampled_from(list(Scope)),
    batch_size=st.integers(min_value=1, max_value=12),
)
def test_execute_then_rollback_leaves_market_data_identical(
    reference_data, symbol_specs, candle_specs, scope, batch_size
):
    with transaction.atomic():
        build(symbol_specs, candle_specs)
        before = market_data_checksum()
        run = services.correction_run_create(
            requested_by="prop",
            only_null=scope == Scope.NULL,
            overwrite_mismatched=scope == Scope.ALL,
            batch_size=batch_size,
            sample_size=0,
        )
        expected_changes = services.correction_preview(run=run, page_size=1000).total_rows
        result = services.correction_execute(run=run)
        assert result.rows_updated == result.rows_backed_up == expected_changes
        assert services.correction_validate(run=run).ok
        rolled = services.correction_rollback(run=run, reason="property", requested_by="prop", batch_size=batch_size)
        assert (rolled.rows_restored, rolled.conflicts) == (expected_changes, 0)
        assert market_data_checksum() == before
        transaction.set_rollback(True)
