"""bench/bench_scale.py at a tiny size: the files it writes are what the importer reads, its
storage figure counts every partition, and its plain script computes what our feature step
stores (so the features ratio compares the same work)."""

from __future__ import annotations

import importlib.util
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection

from batchimport.parsing import Candle, CsvFileReader, validate
from etl.services import pipeline_run, reference_data_bootstrap

spec = importlib.util.spec_from_file_location("bench_scale", Path(__file__).resolve().parents[1] / "bench_scale.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def read(path: Path) -> list:
    return list(CsvFileReader(path))


def test_generated_files_read_clean_on_each_exchange_trading_days(tmp_path):
    made = bench.generate(tmp_path, 7, 60)
    assert made["files"] == 15
    names = {}
    for market, code, count in (("NASDAQ", "XNAS", 4), ("NYSE", "XNYS", 3)):
        days = bench.bar_days(code, 60)
        files = sorted((tmp_path / "initial" / market).glob("*.csv"))
        names[market] = {f.stem for f in files}
        assert len(files) == count
        for path in files:
            rows = read(path)
            assert all(type(row) is Candle for row in rows), [row for row in rows if type(row) is not Candle]
            assert [row.ts.date() for row in rows] == days[:-1]
            prices = [[Decimal(x) for x in (r.open, r.high, r.low, r.close, r.volume)] for r in rows]
            assert all(validate(*p) is None for p in prices)
            new_bar = read(tmp_path / "hourly" / market / path.name)
            assert [row.ts.date() for row in new_bar] == days[-1:]
            assert new_bar[0].open == rows[-1].close  # the hourly bar continues the series
    assert len(names["NASDAQ"] | names["NYSE"]) == 7
    assert {len(t) for t in names["NASDAQ"]} == {4} and {len(t) for t in names["NYSE"]} == {3}
    big = CsvFileReader(tmp_path / "bigfile" / "Crypto" / "BIGFILE.csv")
    assert sum(type(row) is Candle for row in big) == 420 and big.meta.timeframe == "1m"


@pytest.mark.django_db
def test_storage_counts_every_partition_of_a_partitioned_table_and_a_plain_one():
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE bench_parted (ts date, v text) PARTITION BY RANGE (ts)")
        for name, first, end in (("a", "2024-01-01", "2025-01-01"), ("b", "2025-01-01", "2026-01-01")):
            cur.execute(
                f"CREATE TABLE bench_parted_{name} PARTITION OF bench_parted FOR VALUES FROM ('{first}') TO ('{end}')"
            )
        cur.execute("CREATE INDEX ON bench_parted (ts)")
        cur.execute(
            "INSERT INTO bench_parted SELECT date '2024-06-01' + i, repeat('x', 50) FROM generate_series(0, 399) i"
        )
        cur.execute("CREATE TABLE bench_plain AS SELECT * FROM bench_parted")
        cur.execute(
            "SELECT sum(pg_total_relation_size(relid))::bigint FROM pg_partition_tree('bench_parted') WHERE isleaf"
        )
        leaves = cur.fetchone()[0]
        cur.execute("SELECT pg_total_relation_size('bench_plain')")
        plain = cur.fetchone()[0]
    figures = bench.storage(("bench_parted", "bench_plain"))
    assert figures["bench_parted"]["partitions"] == 2
    assert figures["bench_parted"]["bytes"] == leaves > plain  # the index pages count too
    assert figures["bench_parted"]["index_bytes"] > 0
    assert figures["bench_plain"]["partitions"] == 1 and figures["bench_plain"]["bytes"] == plain
    assert figures["bench_parted"]["rows"] == figures["bench_plain"]["rows"] == 400
    assert figures["bench_parted"]["bytes_per_candle"] == leaves / 400


@pytest.mark.django_db(transaction=True)  # the plain script reads through a second session
def test_plain_script_computes_what_the_feature_step_stores_and_leaves_it(tmp_path, settings):
    settings.DATA_ROOT = tmp_path
    bench.generate(tmp_path, 4, 80)
    reference_data_bootstrap()
    for steps in (["import"], ["sync"], ["features"]):
        assert pipeline_run(steps=steps, options={"path": "initial"}).ok
    with connection.cursor() as cur:
        cur.execute("SELECT sum(atr_14), sum(rsi_14), count(sma_50) FROM market_data_v2")
        stored = cur.fetchone()
    result = bench.step_reference(bench.NEW_BAR_FROM)
    assert result["status"] == "succeeded"
    assert result["rows"] == result["rows_updated"] == result["rows_compared"] == 320
    assert result["mismatches"] == dict.fromkeys(bench.REF_COLUMNS, 0)
    with connection.cursor() as cur:
        cur.execute("SELECT sum(atr_14), sum(rsi_14), count(sma_50) FROM market_data_v2")
        assert cur.fetchone() == stored  # rolled back: our values stay
