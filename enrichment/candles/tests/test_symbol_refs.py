"""market_data_v2 and data_quality_metrics name their symbol without a row-level foreign key
(migration enrichment/0013): a check per written statement keeps the guarantee."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from enrichment.candles.services.feature_runs import features_run
from enrichment.candles.tests.feature_fixtures import insert_market_data, make_symbol, random_candles
from enrichment.models import DataQualityMetric, MarketDataV2
from etl.models import Symbol

pytestmark = pytest.mark.django_db

V2_INSERT = (
    "INSERT INTO market_data_v2 (symbol_id, timeframe, ts, open, high, low, close, volume, source, revision,"
    " quality_flags) SELECT s, '15m', '2024-01-02'::timestamptz, 1, 1, 1, 1, 1, 'test', 1, 0 FROM unnest(%s::int[]) s"
)
METRIC_INSERT = (
    "INSERT INTO data_quality_metrics (symbol_id, timeframe, day, expected_bars, actual_bars, gaps,"
    " volume_anomalies, ohlc_inconsistencies, outside_session) SELECT s, '15m', '2024-01-02', 96, 96, 0, 0, 0, 0"
    " FROM unnest(%s::int8[]) s"
)


def missing_id() -> int:
    return (Symbol.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1000


def computed_symbol(ticker: str) -> Symbol:
    symbol = make_symbol(ticker, "BINANCE", "CRYPTO")
    insert_market_data(symbol, random_candles(40, seed=len(ticker)))
    return symbol


@pytest.mark.parametrize("statement", [V2_INSERT, METRIC_INSERT], ids=["market_data_v2", "data_quality_metrics"])
def test_a_row_for_a_missing_symbol_cannot_be_written(statement):
    """Alone or among rows of a real symbol, in one statement: the statement fails, nothing is written."""
    real = make_symbol("REAL", "BINANCE", "CRYPTO").pk
    for ids in ([missing_id()], [real, missing_id()]):
        with pytest.raises(IntegrityError, match=f"symbol {missing_id()}"), transaction.atomic():
            with connection.cursor() as cur:
                cur.execute(statement, [ids])
    assert not MarketDataV2.objects.exists() and not DataQualityMetric.objects.exists()
    with connection.cursor() as cur:
        cur.execute(statement, [[real]])  # a real symbol's row is written
        assert cur.rowcount == 1


def test_a_row_cannot_be_moved_to_a_missing_symbol():
    symbol = computed_symbol("MOVE")
    features_run()
    for model in (MarketDataV2, DataQualityMetric):
        with pytest.raises(IntegrityError), transaction.atomic():
            model.objects.filter(symbol=symbol).update(symbol_id=missing_id())
        assert model.objects.filter(symbol=symbol).exists()


@pytest.mark.parametrize("how", ["django", "sql"])
def test_deleting_a_symbol_leaves_no_orphans_and_the_summaries_exact(how, reference_data, assert_summaries_exact):
    """Django's cascade, or a DELETE in SQL (the trigger deletes the symbol's rows first, while the
    quality summaries' triggers can still find its market)."""
    gone, kept = computed_symbol("GONE"), computed_symbol("KEPT")
    features_run()
    assert MarketDataV2.objects.filter(symbol=gone).exists() and DataQualityMetric.objects.filter(symbol=gone).exists()
    kept_rows = MarketDataV2.objects.filter(symbol=kept).count()
    if how == "django":
        gone.delete()
    else:
        with connection.cursor() as cur:
            cur.execute("DELETE FROM market_data WHERE symbol_id = %s", [gone.pk])
            cur.execute("DELETE FROM enrichment_status WHERE symbol_id = %s", [gone.pk])
            cur.execute("DELETE FROM enrichment_compute_log WHERE symbol_id = %s", [gone.pk])
            cur.execute("DELETE FROM symbols WHERE id = %s", [gone.pk])
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the deferred keys of other tables, now
    with connection.cursor() as cur:
        cur.execute(
            "SELECT (SELECT count(*) FROM market_data_v2 v WHERE NOT EXISTS (SELECT FROM symbols s"
            " WHERE s.id = v.symbol_id)), (SELECT count(*) FROM data_quality_metrics q WHERE NOT EXISTS"
            " (SELECT FROM symbols s WHERE s.id = q.symbol_id))"
        )
        assert cur.fetchone() == (0, 0)
    assert MarketDataV2.objects.filter(symbol=kept).count() == kept_rows
    assert_summaries_exact()


def test_a_symbol_named_by_candles_keeps_its_id():
    symbol = computed_symbol("KEEP")
    features_run()
    with pytest.raises(IntegrityError, match="cannot change"), transaction.atomic():
        Symbol.objects.filter(pk=symbol.pk).update(id=missing_id())


def test_the_checks_are_one_per_statement_not_one_per_row():
    """No foreign key (and so no RI trigger per written row) from either table to symbols; a
    statement-level trigger on each instead."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'f'"
            " AND confrelid = 'symbols'::regclass"
            " AND conrelid::regclass::text IN ('market_data_v2', 'data_quality_metrics')"
        )
        assert cur.fetchall() == []
        cur.execute(
            "SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgname = 'symbol_refs_ins'"
            " AND tgtype & 1 = 0 ORDER BY 1"  # bit 0 unset: FOR EACH STATEMENT
        )
        assert [t for (t,) in cur.fetchall()] == ["data_quality_metrics", "market_data_v2"]
