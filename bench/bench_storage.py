"""Bytes per candle of market_data and market_data_v2 after the whole pipeline (issue 14).

Generates N symbols x B daily bars as one STANDARD file per symbol (NASDAQ folder), then runs
the pipeline's steps through their services, in order: import -> sync -> correct -> features
(from scratch), and prints each step's time and, for both tables, the bytes per candle (every
partition's heap + indexes + TOAST, `pg_total_relation_size` over `pg_partition_tree`) with the
share of each index. Run it in a database of its own, it deletes every candle first:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mt_bench python bench/bench_storage.py --symbols 4000 --bars 250

(`--wipe` lets it empty a database that holds candles; `--symbols-first` writes candles linked.)
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mytrader.settings")

# A plain (not partitioned) table has no partition tree: it is its own only leaf.
TREE = """
WITH tree AS (SELECT relid, isleaf FROM pg_partition_tree(%(t)s::regclass)
              UNION ALL SELECT %(t)s::regclass, true WHERE NOT EXISTS (SELECT FROM pg_partition_tree(%(t)s::regclass)))
"""
SIZES_SQL = (
    TREE
    + """
SELECT coalesce(sum(pg_relation_size(relid)) FILTER (WHERE isleaf), 0),
       coalesce(sum(pg_total_relation_size(relid)), 0)
FROM tree
"""
)
INDEX_SQL = (
    TREE
    + """
SELECT regexp_replace(i.relname, '^(market_data(_v2)?)_(y[0-9]{4}_|p[0-9]+_)?', ''), sum(pg_relation_size(i.oid))
FROM tree p JOIN pg_index x ON x.indrelid = p.relid JOIN pg_class i ON i.oid = x.indexrelid
WHERE p.isleaf GROUP BY 1 ORDER BY 2 DESC
"""
)


def sizes(table: str) -> str:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(f"VACUUM ANALYZE {table}")
        cur.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - our own table names
        rows = cur.fetchone()[0]
        cur.execute(SIZES_SQL, {"t": table})
        heap, total = cur.fetchone()
        cur.execute(INDEX_SQL, {"t": table})
        indexes = cur.fetchall()
    per = lambda n: n / rows if rows else 0.0  # noqa: E731
    parts = ", ".join(f"{name} {per(n):.0f}" for name, n in indexes)
    return f"{table}: {rows:,} rows, {per(total):.0f} bytes per candle (heap {per(heap):.0f}; indexes: {parts})"


def timed(label: str, fn):
    started = time.perf_counter()
    result = fn()
    print(f"{label}: {time.perf_counter() - started:.1f} s", flush=True)
    return result


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=4000)
    parser.add_argument("--bars", type=int, default=250)
    parser.add_argument("--wipe", action="store_true", help="allowed to delete the candles already stored")
    parser.add_argument("--import-only", action="store_true", help="stop after the import (timing runs)")
    parser.add_argument(
        "--symbols-first",
        action="store_true",
        help="create the symbols before the import, so candles are written linked with their class"
        " (what link-at-write gives: sync and correct then rewrite nothing)",
    )
    return parser.parse_args()


def prepare(args: argparse.Namespace, folder: Path) -> None:
    """An empty candle store, the reference data, the files (and with --symbols-first the symbols)."""
    from django.db import connection

    from batchimport.samples import write_standard_rows
    from etl.models import AssetClass, Market, MarketData, Symbol
    from etl.services import reference_data_bootstrap

    if MarketData.objects.exists() and not args.wipe:
        raise SystemExit("this database holds candles: run in a database of its own, or pass --wipe")
    with connection.cursor() as cur:
        cur.execute(
            "TRUNCATE market_data, market_data_v2, correction_backups, correction_runs, import_jobs, symbols CASCADE"
        )
    reference_data_bootstrap()
    print(f"generating {args.symbols:,} files x {args.bars} daily bars ...", flush=True)
    for i in range(args.symbols):
        write_standard_rows(
            folder / f"S{i:05d}.csv", rows=args.bars, ticker=f"S{i:05d}", seed=i, step=timedelta(days=1)
        )
    if args.symbols_first:
        market, klass = Market.objects.get(code="NASDAQ"), AssetClass.objects.get(code="STOCK_NASDAQ")
        Symbol.objects.bulk_create(
            Symbol(ticker=f"S{i:05d}", market=market, asset_class=klass) for i in range(args.symbols)
        )


def pipeline(*, import_only: bool) -> None:
    from batchimport import services as imports
    from corrections import services as corrections
    from enrichment.candles.services.feature_runs import features_run
    from etl.services.symbols import symbols_sync

    job = imports.import_job_create(path="NASDAQ", market="NASDAQ", requested_by="bench")
    job = timed("import", lambda: imports.import_job_start(job=job))
    print(f"  {job.status}: {job.rows_inserted:,} inserted", flush=True)
    if import_only:
        return
    timed("sync", lambda: symbols_sync())
    run = corrections.correction_run_create(requested_by="bench")
    timed("correct", lambda: corrections.correction_execute(run=run))
    timed("features", lambda: features_run(full=True))
    print(sizes("market_data"))
    print(sizes("market_data_v2"))
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("VACUUM FULL market_data")
        cur.execute("VACUUM FULL market_data_v2")
    print("compacted (VACUUM FULL: every row written once, no dead space):")
    print(sizes("market_data"))
    print(sizes("market_data_v2"))


def main() -> None:
    args = arguments()
    tmp = Path(tempfile.mkdtemp(prefix="bench_storage_"))
    os.environ["DATA_ROOT"] = str(tmp)
    import django

    django.setup()
    logging.getLogger("batchimport").setLevel(logging.WARNING)
    try:
        prepare(args, tmp / "NASDAQ")
        pipeline(import_only=args.import_only)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
