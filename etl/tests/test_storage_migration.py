"""The move of a populated market_data and market_data_v2 to yearly partitions, and back
(etl 0013_market_data_partitioned, enrichment 0008_market_data_v2_partitioned)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from batchimport.models import ImportFile, ImportJob
from etl.event_triggers import event_triggers_install
from etl.models import DataCorrection, Market, MarketData, Symbol
from etl.services import reference_data_bootstrap
from etl.services.partitions import partition_years

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("etl", "0012_candle_table_labels_translatable"), ("enrichment", "0007_candle_table_labels_translatable")]
OLD_INSERT = """
INSERT INTO market_data (ticker, market, timeframe, ts, open, high, low, close, volume, adj_close, asset_class,
                         extra, source_file, import_job_id, created_at, updated_at)
VALUES (%s, 'NASDAQ', '1d', %s, 1.5, 2.25, 1.125, 2.0000000001, 1000, NULL, 'STOCK_NASDAQ', %s, %s, %s,
        '2024-01-01', %s)
RETURNING id
"""


def migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def latest() -> list[tuple[str, str]]:
    executor = MigrationExecutor(connection)
    return [node for node in executor.loader.graph.leaf_nodes() if node[0] in ("etl", "enrichment")]


def scalar(sql: str, params=None):
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()[0]


def old_world() -> dict:
    """Candles as the plain tables held them: one from a kept file, one whose job was pruned,
    one from the live poller; a v2 row; a correction backup pointing at a candle id."""
    reference_data_bootstrap()
    job = ImportJob.objects.create(path="NASDAQ", market="NASDAQ")
    kept = ImportFile.objects.create(job=job, relpath="NASDAQ/AAPL.csv", market="NASDAQ")
    touched = datetime(2024, 3, 1, 12, tzinfo=UTC)
    ids = {}
    with connection.cursor() as cur:
        rows = [
            ("AAPL", datetime(1999, 6, 1, tzinfo=UTC), None, kept.relpath, job.pk),
            ("AAPL", datetime(2024, 6, 3, tzinfo=UTC), '{"k": 1}', kept.relpath, job.pk),
            ("MSFT", datetime(2024, 6, 3, tzinfo=UTC), None, "NASDAQ/MSFT.csv", 999_999),
            ("BTC", datetime(2024, 6, 3, tzinfo=UTC), None, "live:BINANCE", None),
        ]
        for ticker, ts, extra, path, job_id in rows:
            cur.execute(OLD_INSERT, [ticker, ts, extra, path, job_id, touched])
            ids[(ticker, ts.year)] = cur.fetchone()[0]
        symbol = Symbol.objects.create(ticker="AAPL", market=Market.objects.get(code="NASDAQ"))
        cur.execute(
            "INSERT INTO market_data_v2 (symbol_id, timeframe, ts, open, high, low, close, volume, rsi_14,"
            " quality_flags, source, revision, created_at, updated_at)"
            " VALUES (%s, '1d', '2024-06-03', 1.5, 2.25, 1.125, 0.1::float8 + 0.2::float8, 1000, 55.5, 0,"
            " 'market_data', 1, now(), now()) RETURNING id",
            [symbol.pk],
        )
        ids["v2"] = cur.fetchone()[0]
    return {"ids": ids, "file": kept, "job": job, "touched": touched}


def candles() -> list[tuple]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT id, ticker, ts, open, high, low, close, volume, asset_class, extra, updated_at"
            " FROM market_data ORDER BY id"
        )
        return cur.fetchall()


def test_a_populated_table_moves_to_partitions_with_its_ids_sequence_and_provenance_and_back(migrations_restored):
    migrate(BEFORE)
    # What post_migrate does after a real `migrate` back: the run tables' summary triggers go with
    # the summaries' tables (a run written in the old world failed on the missing table).
    event_triggers_install()
    world = old_world()
    before = candles()
    sequence_at = scalar("SELECT last_value FROM market_data_id_seq")
    migrate(latest())
    event_triggers_install()  # what post_migrate does after a real `migrate`

    assert candles() == before  # every row, its id and its values
    assert set(partition_years("market_data")) >= {1999, 2024}
    aapl = MarketData.objects.get(pk=world["ids"][("AAPL", 2024)])
    assert aapl.import_file_id == world["file"].pk
    # The MSFT path had no file row left: it is kept in the audit trail, not dropped.
    lost = DataCorrection.objects.get(kind="provenance_kept")
    assert (lost.ticker, lost.old_value, lost.row_count) == ("MSFT", "NASDAQ/MSFT.csv", 1)
    assert MarketData.objects.get(ticker="BTC").import_file_id is None
    # The sequence goes on where it was: no id is given twice.
    new = MarketData.objects.create(
        ticker="NEW", market="NASDAQ", timeframe="1d", ts=datetime(2024, 7, 1, tzinfo=UTC),
        open=1, high=1, low=1, close=1, volume=1,
    )  # fmt: skip
    assert new.pk == sequence_at + 1
    assert scalar("SELECT count(*) FROM pg_trigger WHERE tgname = 'metric_market_data_newest'") >= 1
    assert scalar("SELECT relkind FROM pg_class WHERE relname = 'market_data_v2'") == "p"
    # float8 features come over bit for bit.
    v2 = scalar("SELECT row(close, rsi_14, symbol_id)::text FROM market_data_v2 WHERE id = %s", [world["ids"]["v2"]])
    assert v2 == f"(0.30000000000000004,55.5,{Symbol.objects.get().pk})"

    migrate(BEFORE)
    assert scalar("SELECT relkind FROM pg_class WHERE relname = 'market_data'") == "r"
    with connection.cursor() as cur:
        cur.execute("SELECT source_file, import_job_id FROM market_data WHERE id = %s", [aapl.pk])
        assert cur.fetchone() == ("NASDAQ/AAPL.csv", world["job"].pk)
    assert scalar("SELECT count(*) FROM market_data") == len(before) + 1
    migrate(latest())


def key_columns() -> list[str]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT a.attname FROM pg_constraint c"
            " CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)"
            " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum"
            " WHERE c.conname = 'uniq_market_data_bar' AND c.conrelid = 'market_data'::regclass ORDER BY k.n"
        )
        return [row[0] for row in cur.fetchall()]


def test_a_populated_table_gets_the_updated_at_brin_and_the_market_first_key_and_back(migrations_restored):
    migrate([("etl", "0016_fill_integrity_summaries")])
    reference_data_bootstrap()
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO market_data (ticker, market, timeframe, ts, open, high, low, close, volume)"
            " SELECT 'T' || (g % 7), 'NASDAQ', '1d', timestamptz '2024-01-01' + g * interval '1 day',"
            " 1, 2, 0.5, 1.5, 10"
            " FROM generate_series(0, 299) g"
        )
    before = candles()
    assert key_columns() == ["ticker", "market", "timeframe", "ts"]
    migrate([("etl", "0018_market_data_key_market_first")])
    assert candles() == before
    assert key_columns() == ["market", "ticker", "timeframe", "ts"]
    assert scalar("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'market_data_y2024_updated_at%%'") == 1
    # The key still refuses a duplicate bar and still serves the writers' ON CONFLICT (ticker, market, ...).
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO market_data (ticker, market, timeframe, ts, open, high, low, close, volume)"
            " VALUES ('T1', 'NASDAQ', '1d', timestamptz '2024-01-02', 9, 9, 9, 9, 9)"
            " ON CONFLICT (ticker, market, timeframe, ts) DO UPDATE SET volume = 11"
        )
    assert scalar("SELECT volume FROM market_data WHERE ticker = 'T1' AND ts = '2024-01-02'") == 11
    migrate([("etl", "0016_fill_integrity_summaries")])
    assert key_columns() == ["ticker", "market", "timeframe", "ts"]
    assert scalar("SELECT count(*) FROM pg_indexes WHERE indexdef LIKE '%%brin (updated_at)%%'") == 0
    assert scalar("SELECT count(*) FROM market_data") == 300
