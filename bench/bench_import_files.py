"""Import benchmark for many small files: N files of B daily bars (one NASDAQ ticker
each, STANDARD layout) against one file of N x B rows, in the same run.

    python bench/bench_import_files.py [--files 5000] [--bars 250] [--workers 1] [--group-files 100]

Runs in a scratch database (<your database>_bench_import_files), created, given
its reference data, and dropped by the script. Each import is the service every
door calls (claim, parse, stage, symbols, write), run in a child process so its
peak memory (ru_maxrss) is its own:
- one big file (N x B one-minute bars, one ticker), before and after the many
  files: the mean of the two is the reference rate (the machine is shared);
- the N small files as one job (`--group-files` files per group; 1 = one at a time);
- then the symbol sync over what the import wrote (it finds nothing unlinked when the
  import linked every candle) and the count of candles whose asset class differs
  from their symbol's (what the correct step would rewrite).
Target: the small files at >= 50 % of the big file's rate.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mytrader.settings")
os.environ.setdefault("DEBUG", "on")

HEADER = "HisseKodu,Tarih,AcilisFiyati,EnYuksek,EnDusuk,KapanisFiyati,DuzeltilmisKapanis,Hacim\n"


def tickers(n: int) -> list[str]:
    """N distinct US-looking tickers (QAAAA, QAAAB, ...)."""
    out = []
    for i in range(n):
        code = ""
        for _ in range(4):
            code = chr(65 + i % 26) + code
            i //= 26
        out.append("Q" + code)
    return out


def write_small_files(folder: Path, *, files: int, bars: int) -> int:
    """One STANDARD file of `bars` weekday bars per ticker; the bytes written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1)
    days, day = [], date(2021, 1, 4)
    while len(days) < bars:
        if day.weekday() < 5:
            days.append(day.isoformat())
        day += timedelta(days=1)
    size = 0
    for ticker in tickers(files):
        price, lines = 100.0, [HEADER]
        for stamp in days:
            o = price
            c = max(0.01, o * (1 + (rng.random() - 0.5) * 0.02))
            h, lo = max(o, c) + 0.01, min(o, c) - 0.01
            lines.append(f"{ticker},{stamp},{o:.2f},{h:.2f},{lo:.2f},{c:.2f},{c:.2f},{rng.randint(1, 99999)}\n")
            price = c
        text = "".join(lines)
        (folder / f"{ticker}.csv").write_text(text)
        size += len(text)
    return size


def child_import(relpath: str, workers: int) -> None:
    """In a subprocess: one whole import, its figures as JSON."""
    import django

    django.setup()
    from batchimport import services

    started = time.perf_counter()
    job = services.import_job_create(path=relpath, market="NASDAQ", requested_by="bench")
    job = services.import_job_start(job=job, workers=workers)
    seconds = time.perf_counter() - started
    figures = {
        "job_id": job.pk,
        "status": job.status,
        "files": job.files_total,
        "rows": job.rows_read,
        "inserted": job.rows_inserted,
        "seconds": seconds,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(figures))


def run_child(relpath: str, *, data_root: Path, database_url: str, workers: int, group_files: int) -> dict:
    env = {
        **os.environ,
        "DATA_ROOT": str(data_root),
        "DATABASE_URL": database_url,
        "IMPORT_GROUP_FILES": str(group_files),
        "LOG_LEVEL": "WARNING",
    }
    out = subprocess.run(
        [sys.executable, __file__, "--child-import", relpath, "--workers", str(workers)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def child_url() -> str:
    from django.db import connection

    params = connection.get_connection_params()
    query = urlencode({"host": params.get("host") or "127.0.0.1", "port": params.get("port") or 5432})
    return f"postgres://{params.get('user') or 'postgres'}@/{params['dbname']}?{query}"


def scalar(sql: str):
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def after_import() -> dict:
    """The sync over what the import wrote, and what the correct step would find."""
    from etl import services

    started = time.perf_counter()
    sync = services.symbols_sync()
    seconds = time.perf_counter() - started
    mismatched = scalar(
        "SELECT count(*) FROM market_data m JOIN symbols s ON s.id = m.symbol_id"
        " JOIN asset_classes a ON a.id = s.asset_class_id WHERE m.asset_class IS DISTINCT FROM a.code"
    )
    return {
        "sync_seconds": seconds,
        "symbols_created": sync.symbols_created,
        "candles_linked": sync.candles_linked,
        "unlinked": sync.candles_without_symbol,
        "asset_class_mismatched": mismatched,
    }


def report(args, big: list[dict], many: dict, after: dict, sizes: tuple[int, int]) -> None:
    rows = args.files * args.bars
    big_seconds = sum(b["seconds"] for b in big) / len(big)
    big_rate, many_rate = rows / big_seconds, rows / many["seconds"]
    overhead_ms = (many["seconds"] - big_seconds) / args.files * 1000
    print()
    print(
        f"{args.files:,} files x {args.bars} daily bars ({sizes[0] / 1e6:,.1f} MB) against one file of {rows:,}"
        f" one-minute bars ({sizes[1] / 1e6:,.1f} MB); {args.workers} worker(s), groups of up to {args.group_files}"
    )
    print(f"{'import':<34} {'rows':>11} {'seconds':>8} {'rows/s':>9} {'peak RSS':>9}")
    for name, figures in [("one big file (1/2)", big[0]), ("one big file (2/2)", big[-1]), ("many small files", many)]:
        rows, seconds, rss = figures["rows"], figures["seconds"], figures["maxrss_mb"]
        print(f"{name:<34} {rows:>11,} {seconds:>8.1f} {rows / seconds:>9,.0f} {rss:>6.0f} MB")
    print(f"many files / one big file: {many_rate / big_rate:.0%} of the rate (target >= 50 %)")
    print(f"overhead per small file beyond its rows: {overhead_ms:.1f} ms")
    print(
        f"symbol sync afterwards: {after['sync_seconds']:.2f} s, {after['symbols_created']} symbols created,"
        f" {after['candles_linked']} candles linked, {after['unlinked']} unlinked;"
        f" candles whose asset class differs from their symbol's: {after['asset_class_mismatched']}"
    )


def run(args, tmp: Path) -> None:
    from batchimport.samples import write_standard_rows

    data_root = tmp / "data"
    print(f"generating {args.files:,} files x {args.bars} bars and one file of {args.files * args.bars:,} rows ...")
    small_bytes = write_small_files(data_root / "NASDAQ" / "many", files=args.files, bars=args.bars)
    for name in ("BIGA", "BIGB"):
        write_standard_rows(data_root / "NASDAQ" / name / f"{name}.csv", rows=args.files * args.bars, ticker=name)
    big_bytes = (data_root / "NASDAQ" / "BIGA" / "BIGA.csv").stat().st_size
    url = child_url()
    common = {"data_root": data_root, "database_url": url, "workers": args.workers, "group_files": args.group_files}
    print("one big file (1/2) ...", flush=True)
    big = [run_child("NASDAQ/BIGA", **common)]
    print("many small files ...", flush=True)
    many = run_child("NASDAQ/many", **common)
    print("one big file (2/2) ...", flush=True)
    big.append(run_child("NASDAQ/BIGB", **common))
    for figures in (*big, many):
        assert figures["status"] == "succeeded" and figures["rows"] == args.files * args.bars, figures
    print("symbol sync ...", flush=True)
    report(args, big, many, after_import(), (small_bytes, big_bytes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=5_000)
    parser.add_argument("--bars", type=int, default=250)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--group-files", type=int, default=100, help="IMPORT_GROUP_FILES for the imports")
    parser.add_argument("--child-import", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_import:
        child_import(args.child_import, args.workers)
        return
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    from etl import services

    db = settings.DATABASES["default"]
    db.setdefault("TEST", {})["NAME"] = f"{db['NAME']}_bench_import_files"
    old_config = setup_databases(verbosity=0, interactive=False)
    tmp = Path(tempfile.mkdtemp(prefix="bench_import_files_"))
    try:
        services.reference_data_bootstrap()
        run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        connection.close()
        teardown_databases(old_config, verbosity=0)


if __name__ == "__main__":
    main()
