"""Benchmark of the asset-class correction: execute (with backup) and rollback
over 1,000,000 candles that all need correcting, against hand-written SQL
doing the same work (backup INSERT ... SELECT, UPDATE ... FROM) in the same
script on the same data. Prints rows/s, the ratios and peak memory.

Runs in a scratch database (<your database>_bench_corrections), created and
dropped here, so it never touches real data.

    DATABASE_URL=postgres://... .venv/bin/python bench/bench_corrections.py
    BENCH_CORRECTION_ROWS=200000 BENCH_ROUNDS=2 ...   (smaller / repeated)
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mytrader.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

ROWS = int(os.environ.get("BENCH_CORRECTION_ROWS", "1000000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1"))
SYMBOLS = 1000

REFERENCE_EXECUTE = [
    "CREATE TABLE bench_backup (id bigint PRIMARY KEY, old_value varchar(32), old_updated_at timestamptz)",
    "INSERT INTO bench_backup (id, old_value, old_updated_at)"
    " SELECT md.id, md.asset_class, md.updated_at FROM market_data md"
    " JOIN symbols s ON s.id = md.symbol_id JOIN asset_classes ac ON ac.id = s.asset_class_id"
    " WHERE md.asset_class IS DISTINCT FROM ac.code",
    "UPDATE market_data md SET asset_class = ac.code, updated_at = now()"
    " FROM symbols s JOIN asset_classes ac ON ac.id = s.asset_class_id"
    " WHERE s.id = md.symbol_id AND md.asset_class IS DISTINCT FROM ac.code",
]
REFERENCE_ROLLBACK = [
    "UPDATE market_data md SET asset_class = b.old_value, updated_at = b.old_updated_at"
    " FROM bench_backup b WHERE md.id = b.id",
    "DROP TABLE bench_backup",
]


def sql(*statements: str) -> None:
    with connection.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def fingerprint() -> tuple[int, str]:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*), sum(hashtextextended(md::text, 0)::numeric)::text FROM market_data md")
        return cur.fetchone()


def vacuum() -> None:
    # Outside the timed parts: both sides start from the same table shape.
    sql("VACUUM ANALYZE market_data", "VACUUM ANALYZE correction_backups")


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def load() -> None:
    from datetime import UTC, datetime, timedelta

    from etl.services import reference_data_bootstrap
    from etl.services.partitions import partitions_ensure

    reference_data_bootstrap()
    per_symbol = ROWS // SYMBOLS
    start = datetime(2000, 1, 1, tzinfo=UTC)
    partitions_ensure(table="market_data", first=start, last=start + timedelta(days=per_symbol))
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO symbols (ticker, market_id, asset_class_id, base_currency, quote_currency, name, sector,"
            " industry, country, description, website, category, is_active, source, created_at, updated_at)"
            " SELECT 'T' || g, m.id, ac.id, '', '', '', '', '', '', '', '', '', true, 'manual', now(), now()"
            " FROM generate_series(0, %s - 1) g"
            " JOIN (VALUES (0, 'BIST', 'STOCK_BIST'), (1, 'NASDAQ', 'STOCK_NASDAQ'), (2, 'NYSE', 'STOCK_NYSE'),"
            " (3, 'BINANCE', 'CRYPTO')) AS l(k, market, cls) ON l.k = mod(g, 4)"
            " JOIN markets m ON m.code = l.market JOIN asset_classes ac ON ac.code = l.cls",
            [SYMBOLS],
        )
        # Every candle needs correcting: mostly the folder name, some NULL, some empty.
        cur.execute(
            "INSERT INTO market_data (ticker, market, timeframe, ts, open, high, low, close, volume, asset_class,"
            " symbol_id)"
            " SELECT s.ticker, m.code, '1d', timestamptz '2000-01-01 00:00+00' + d * interval '1 day',"
            " 10, 12, 9, 11, 1000 + d,"
            " CASE WHEN mod(d, 10) = 0 THEN NULL WHEN mod(d, 10) = 1 THEN ''"
            " ELSE CASE m.code WHEN 'BINANCE' THEN 'Crypto' ELSE m.code END END, s.id"
            " FROM symbols s JOIN markets m ON m.id = s.market_id, generate_series(0, %s - 1) d"
            " ORDER BY d, s.id",
            [per_symbol],
        )
    vacuum()


def main() -> None:
    from corrections import selectors, services
    from corrections.models import Scope

    started_all = time.perf_counter()
    load()
    total = selectors.rows_needing_change(scope=Scope.ALL)
    assert total == (ROWS // SYMBOLS) * SYMBOLS, total
    original = fingerprint()
    print(f"asset-class correction benchmark: {total:,} candles needing correction, {ROUNDS} round(s)")
    best = {"ref_execute": [], "ref_rollback": [], "execute": [], "rollback": []}
    for _ in range(ROUNDS):
        best["ref_execute"].append(timed(lambda: sql(*REFERENCE_EXECUTE)))
        assert selectors.rows_needing_change(scope=Scope.ALL) == 0
        vacuum()
        best["ref_rollback"].append(timed(lambda: sql(*REFERENCE_ROLLBACK)))
        assert fingerprint() == original, "hand-written rollback did not restore the table"
        vacuum()

        run = services.correction_run_create(requested_by="bench", overwrite_mismatched=True, sample_size=0)
        result = None

        def execute(run=run):
            nonlocal result
            result = services.correction_execute(run=run)

        best["execute"].append(timed(execute))
        assert result.rows_updated == result.rows_backed_up == total
        assert selectors.rows_needing_change(scope=Scope.ALL) == 0
        vacuum()
        best["rollback"].append(
            timed(lambda run=run: services.correction_rollback(run=run, reason="bench", requested_by="bench"))
        )
        assert fingerprint() == original, "rollback did not restore the table exactly"
        vacuum()

    t = {name: min(times) for name, times in best.items()}
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for label, key in [
        ("hand-written SQL execute (backup + update) ", "ref_execute"),
        ("correction_execute (batches, backup, audit)", "execute"),
        ("hand-written SQL rollback                  ", "ref_rollback"),
        ("correction_rollback (batches, conflicts)   ", "rollback"),
    ]:
        print(f"  {label} {t[key]:7.2f} s  {total / t[key]:>12,.0f} rows/s")
    print(f"  ratio execute / hand-written   {t['execute'] / t['ref_execute']:.2f}x  (target <= 2x)")
    print(f"  ratio rollback / hand-written  {t['rollback'] / t['ref_rollback']:.2f}x")
    print(f"  rollback restored every row exactly (fingerprint of all {total:,} rows equal)")
    print(f"  peak memory (python process) {peak_mb:.0f} MB; whole benchmark {time.perf_counter() - started_all:.0f} s")


if __name__ == "__main__":
    db = settings.DATABASES["default"]
    db["TEST"] = {**db.get("TEST", {}), "NAME": f"{db['NAME']}_bench_corrections"}
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        main()
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
