"""Import benchmark: the whole import against plain COPY and Django bulk_create.

    python bench/bench_import.py [--rows 1000000] [--sample 50000]

On a generated STANDARD-layout file of --rows minute bars (one ticker):
- whole import: parse, validate, binary COPY into staging, INSERT … SELECT …
  ON CONFLICT into market_data (the service every door calls), in a child
  process so its peak memory (ru_maxrss) is its own;
- plain COPY: the same rows, already in final form, as CSV text through
  `COPY … FROM STDIN (FORMAT csv)` into a table made `LIKE market_data
  INCLUDING ALL` (same columns, same unique key, same indexes); run before and
  after the import, the mean is the reference (the machine is shared);
- bulk_create: --sample rows read with csv + Decimal and saved with
  `MarketData.objects.bulk_create` (what an ORM importer would do);
- memory: the whole import of a file 4x smaller, to show that peak memory
  does not grow with the file.
Figures are printed as a table; the ratio to plain COPY is the target (>= 40 %).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mytrader.settings")
os.environ.setdefault("DEBUG", "on")

BENCH_TICKERS = ("BENCH", "BENCHS", "BENCHBC")


def setup_django() -> None:
    import django

    django.setup()


def child_import(relpath: str) -> None:
    """Run in a subprocess: one whole import, print its figures as JSON."""
    setup_django()
    from batchimport import services

    started = time.perf_counter()
    job = services.import_job_create(path=relpath, market="CRYPTO", requested_by="bench")
    job = services.import_job_start(job=job)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "job_id": job.pk,
                "status": job.status,
                "rows": job.rows_read,
                "inserted": job.rows_inserted,
                "seconds": seconds,
                "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def run_child(relpath: str, data_root: Path) -> dict:
    env = {**os.environ, "DATA_ROOT": str(data_root)}
    out = subprocess.run(
        [sys.executable, __file__, "--child-import", relpath], env=env, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def final_rows_csv(source: Path, target: Path) -> int:
    """The rows of `source` as market_data columns (what the import stores), as CSV."""
    n = 0
    with open(source, newline="") as src, open(target, "w", newline="") as dst:
        reader = csv.reader(src)
        next(reader)
        writer = csv.writer(dst)
        for _ticker, stamp, o, h, lo, c, adj, v in reader:
            writer.writerow(["BENCH", "BINANCE", "1m", stamp + "+00", o, h, lo, c, v, adj, "CRYPTO", 1])
            n += 1
    return n


def plain_copy(csv_path: Path) -> float:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench_plain_copy")
        cur.execute("CREATE TABLE bench_plain_copy (LIKE market_data INCLUDING ALL)")
    raw = connection.connection
    started = time.perf_counter()
    with raw.cursor() as cur:
        with cur.copy(
            "COPY bench_plain_copy (ticker, market, timeframe, ts, open, high, low, close, volume, adj_close, "
            "asset_class, import_file_id) FROM STDIN (FORMAT csv)"
        ) as copy:
            with open(csv_path, "rb") as handle:
                while block := handle.read(1 << 20):
                    copy.write(block)
    seconds = time.perf_counter() - started
    with connection.cursor() as cur:
        cur.execute("DROP TABLE bench_plain_copy")
    return seconds


def bulk_create(source: Path, rows: int) -> float:
    from etl.models import MarketData

    started = time.perf_counter()
    objs = []
    with open(source, newline="") as src:
        reader = csv.reader(src)
        next(reader)
        for i, (_t, stamp, o, h, lo, c, adj, v) in enumerate(reader):
            if i >= rows:
                break
            objs.append(
                MarketData(
                    ticker="BENCHBC",
                    market="BINANCE",
                    timeframe="1m",
                    ts=datetime.fromisoformat(stamp).replace(tzinfo=UTC),
                    open=Decimal(o),
                    high=Decimal(h),
                    low=Decimal(lo),
                    close=Decimal(c),
                    volume=Decimal(v),
                    adj_close=Decimal(adj),
                    asset_class="CRYPTO",
                )
            )
    MarketData.objects.bulk_create(objs, batch_size=2000)
    return time.perf_counter() - started


def cleanup(job_ids: list[int]) -> None:
    from batchimport.models import ImportJob
    from etl.models import MarketData

    MarketData.objects.filter(ticker__in=BENCH_TICKERS).delete()
    ImportJob.objects.filter(pk__in=job_ids).delete()


def report(args, size_mb: float, plain_1: float, plain_2: float, whole: dict, quarter: dict, bc_seconds: float) -> None:
    plain_seconds = (plain_1 + plain_2) / 2
    plain_rate = args.rows / plain_seconds
    whole_rate = args.rows / whole["seconds"]
    bc_rate = args.sample / bc_seconds
    print()
    print(f"file: {args.rows:,} rows, {size_mb:,.1f} MB (STANDARD layout, 1-minute bars)")
    print(f"{'method':<44} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'vs COPY':>8} {'peak RSS':>9}")
    lines = [
        ("plain COPY csv (mean of 2 runs)", args.rows, plain_seconds, plain_rate, 1.0, ""),
        (
            "whole import (parse+validate+COPY+upsert)",
            args.rows,
            whole["seconds"],
            whole_rate,
            whole_rate / plain_rate,
            f"{whole['maxrss_mb']:.0f} MB",
        ),
        (
            "whole import, file 4x smaller",
            args.rows // 4,
            quarter["seconds"],
            (args.rows // 4) / quarter["seconds"],
            (args.rows // 4) / quarter["seconds"] / plain_rate,
            f"{quarter['maxrss_mb']:.0f} MB",
        ),
        ("Django bulk_create (sample)", args.sample, bc_seconds, bc_rate, bc_rate / plain_rate, ""),
    ]
    for name, rows, seconds, rate, ratio, rss in lines:
        print(f"{name:<44} {rows:>10,} {seconds:>8.2f} {rate:>10,.0f} {ratio:>7.0%} {rss:>9}")
    print(f"plain COPY runs: {plain_1:.2f} s and {plain_2:.2f} s")
    print(f"whole import / plain COPY: {whole_rate / plain_rate:.0%} (target >= 40 %)")
    print(f"whole import / bulk_create: {whole_rate / bc_rate:.1f}x")
    growth = whole["maxrss_mb"] - quarter["maxrss_mb"]
    print(
        f"peak memory: {quarter['maxrss_mb']:.0f} MB for {args.rows // 4:,} rows, {whole['maxrss_mb']:.0f} MB "
        f"for {args.rows:,} rows (+{growth:.0f} MB for 4x the rows)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=50_000, help="rows for the bulk_create comparison")
    parser.add_argument("--child-import", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_import:
        child_import(args.child_import)
        return
    setup_django()
    from batchimport.samples import write_standard_rows

    tmp = Path(tempfile.mkdtemp(prefix="bench_import_"))
    data_root = tmp / "data"
    job_ids: list[int] = []
    try:
        cleanup([])
        big = data_root / "Crypto" / "BENCH.csv"
        small = data_root / "Crypto" / "small" / "BENCHS.csv"
        print(f"generating {args.rows:,} rows ...", flush=True)
        write_standard_rows(big, rows=args.rows, ticker="BENCH")
        write_standard_rows(small, rows=args.rows // 4, ticker="BENCHS")
        plain_csv = tmp / "plain.csv"
        final_rows_csv(big, plain_csv)
        size_mb = big.stat().st_size / 1e6

        print("plain COPY (1/2) ...", flush=True)
        plain_1 = plain_copy(plain_csv)
        print("whole import ...", flush=True)
        whole = run_child("Crypto/BENCH.csv", data_root)
        job_ids.append(whole["job_id"])
        print("plain COPY (2/2) ...", flush=True)
        plain_2 = plain_copy(plain_csv)
        print("whole import of a file 4x smaller (memory) ...", flush=True)
        quarter = run_child("Crypto/small/BENCHS.csv", data_root)
        job_ids.append(quarter["job_id"])
        print(f"bulk_create of {args.sample:,} rows ...", flush=True)
        bc_seconds = bulk_create(big, args.sample)

        assert whole["status"] == "succeeded" and whole["inserted"] == args.rows, whole
        report(args, size_mb, plain_1, plain_2, whole, quarter, bc_seconds)
    finally:
        cleanup(job_ids)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
