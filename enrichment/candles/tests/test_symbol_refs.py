"""market_data_v2 and data_quality_metrics name their symbol without a row-level foreign key
(migration enrichment/0013): a check per written statement keeps the guarantee."""

from __future__ import annotations

import importlib
from contextlib import contextmanager
from datetime import UTC, datetime

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from enrichment.candles.services.feature_runs import features_run
from enrichment.candles.tests.feature_fixtures import insert_market_data, make_symbol, random_candles
from enrichment.models import DataQualityMetric, MarketDataV2
from etl.models import Symbol
from etl.services.partitions import partitions_ensure

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
            " AND tgtype & 1 = 0"  # bit 0 unset: FOR EACH STATEMENT
            " AND tgrelid IN ('market_data_v2'::regclass, 'data_quality_metrics'::regclass) ORDER BY 1"
        )
        assert [t for (t,) in cur.fetchall()] == ["data_quality_metrics", "market_data_v2"]


# ---------------------------------------------------------------------------- partitions

V2_COLUMNS = "symbol_id, timeframe, ts, open, high, low, close, volume, source, revision, quality_flags"


@contextmanager
def foreign_key_violation(symbol_id: int):
    """The statement fails as a foreign key would fail it (Django wraps an execute's error, not a COPY's)."""
    with pytest.raises((IntegrityError, psycopg.errors.ForeignKeyViolation)) as failed, transaction.atomic():
        yield
    error = failed.value.__cause__ if isinstance(failed.value, IntegrityError) else failed.value
    assert error.sqlstate == "23503" and f"symbol {symbol_id}" in str(error)


def write_into(partition: str, symbol_id: int, ts: datetime, *, how: str) -> None:
    with connection.cursor() as cur:
        if how == "insert":
            cur.execute(
                f"INSERT INTO {partition} ({V2_COLUMNS}) VALUES (%s, '1d', %s, 1, 1, 1, 1, 1, 'test', 1, 0)",  # noqa: S608
                [symbol_id, ts],
            )
        else:
            with cur.cursor.copy(f"COPY {partition} ({V2_COLUMNS}) FROM STDIN") as copy:
                copy.write_row((symbol_id, "1d", ts, 1, 1, 1, 1, 1, "test", 1, 0))


def migrated_partition() -> tuple[str, datetime]:
    """This year's partition: enrichment 0008 made it, before 0013 (the test years' others come
    from candle_partition_ensure)."""
    ts = timezone.now().replace(month=1, day=2, hour=0, minute=0, second=0, microsecond=0)
    return f"market_data_v2_y{ts.year}", ts


@pytest.mark.parametrize("how", ["insert", "copy"])
def test_a_write_straight_into_a_partition_is_checked(how):
    """A statement trigger on the parent does not fire for a statement that names a partition."""
    partition, ts = migrated_partition()
    with foreign_key_violation(missing_id()):
        write_into(partition, missing_id(), ts, how=how)
    assert not MarketDataV2.objects.exists()
    real = make_symbol("REAL", "BINANCE", "CRYPTO").pk
    write_into(partition, real, ts, how=how)
    assert MarketDataV2.objects.filter(symbol_id=real).count() == 1


def test_a_partition_made_later_gets_the_check():
    first = datetime(2090, 1, 1, tzinfo=UTC)
    assert partitions_ensure(table="market_data_v2", first=first, last=first) == [2090]
    for how in ("insert", "copy"):
        with foreign_key_violation(missing_id()):
            write_into("market_data_v2_y2090", missing_id(), first, how=how)
    real = make_symbol("REAL", "BINANCE", "CRYPTO").pk
    write_into("market_data_v2_y2090", real, first, how="insert")
    with connection.cursor() as cur:  # and through the parent, checked by the parent's trigger
        cur.execute(V2_INSERT.replace("'2024-01-02'", "'2090-06-01'"), [[real]])
    assert MarketDataV2.objects.filter(symbol_id=real).count() == 2


def test_every_partition_has_the_check():
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*), count(t.oid) FROM pg_inherits i"
            " LEFT JOIN pg_trigger t ON t.tgrelid = i.inhrelid AND t.tgname = 'symbol_refs_ins'"
            " WHERE i.inhparent = 'market_data_v2'::regclass"
        )
        partitions, checked = cur.fetchone()
    assert partitions > 2 and checked == partitions


# ---------------------------------------------------------------------------- truncate, undo

DELETED_ROWS = (
    "SELECT coalesce(sum(n_tup_del), 0) FROM pg_stat_xact_user_tables"
    " WHERE relname = 'data_quality_metrics' OR relname LIKE 'market\\_data\\_v2\\_y%%'"
)


@pytest.mark.parametrize(
    "truncate",
    ["TRUNCATE symbols CASCADE", "TRUNCATE symbols, market_data_v2, data_quality_metrics CASCADE"],
    ids=["symbols", "with_both_tables"],  # the second as Django's flush names every table
)
def test_truncating_symbols_empties_both_tables_and_the_quality_numbers(
    truncate, reference_data, assert_summaries_exact
):
    """TRUNCATE empties them as TRUNCATE does (no DELETE of every row), and the quality numbers
    equal a recount of the empty table (a DELETE's triggers no longer found the rows' market)."""
    for ticker in ("ONE", "TWO"):
        computed_symbol(ticker)
    features_run()
    assert MarketDataV2.objects.exists() and DataQualityMetric.objects.exists()
    assert_summaries_exact(sources=["quality"])
    with connection.cursor() as cur:
        cur.execute(DELETED_ROWS)
        deleted_before = cur.fetchone()[0]
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the other tables' deferred keys, before TRUNCATE
        cur.execute(truncate)
        cur.execute(DELETED_ROWS)
        deleted = cur.fetchone()[0] - deleted_before
    assert not MarketDataV2.objects.exists() and not DataQualityMetric.objects.exists()
    assert_summaries_exact(sources=["quality"])
    assert deleted == 0  # no row deleted one by one


def test_undoing_the_checks_names_the_orphans_first():
    """The restored foreign keys would fail on one orphan with a bare violation; the undo counts
    them per table first and says so."""
    real = make_symbol("REAL", "BINANCE", "CRYPTO").pk
    with connection.cursor() as cur:
        cur.execute(V2_INSERT, [[real]])
        cur.execute("SET LOCAL session_replication_role = replica")  # no trigger: orphans get in
        cur.execute(V2_INSERT, [[missing_id(), missing_id() + 1]])
        cur.execute(METRIC_INSERT, [[missing_id()]])
        cur.execute("SET LOCAL session_replication_role = origin")
    undo = importlib.import_module("enrichment.migrations.0013_symbol_checks_per_statement")._backward()
    message = "cannot undo enrichment 0013: 2 rows of market_data_v2, 1 rows of data_quality_metrics name a symbol"
    with pytest.raises(IntegrityError, match=message), transaction.atomic(), connection.cursor() as cur:
        cur.execute(undo)


def test_a_write_through_the_parent_is_checked_once():
    """The partitions' own checks do not fire when the parent is the target: one check for a
    statement whose rows land in two partitions, one more for a statement naming a partition."""
    real = make_symbol("REAL", "BINANCE", "CRYPTO").pk
    calls = "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions WHERE funcname = 'symbol_refs_insert'"
    with connection.cursor() as cur:
        cur.execute("SET LOCAL track_functions = 'all'")
        cur.execute(
            f"INSERT INTO market_data_v2 ({V2_COLUMNS}) SELECT %s, '1d', y, 1, 1, 1, 1, 1, 'test', 1, 0"  # noqa: S608
            " FROM unnest(ARRAY['2024-06-01', '2025-06-01']::timestamptz[]) y",
            [real],
        )
        cur.execute(calls)
        assert cur.fetchone()[0] == 1
    write_into("market_data_v2_y2024", real, datetime(2024, 7, 1, tzinfo=UTC), how="insert")
    with connection.cursor() as cur:
        cur.execute(calls)
        assert cur.fetchone()[0] == 2
