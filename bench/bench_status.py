"""The status pages at 100,000 symbols without the 35-minute pipeline (issue 14).

    .venv/bin/python bench/bench_status.py [--symbols 100000] [--bars 10] [--repeat 5] [--fold] [--reuse]
    (make bench-status)

`bench_scale.py 100000 250` takes 35 minutes on this machine before its `status` step; the pages
read summaries, so what they depend on is the number of symbols, series, files and runs and what
the writers left pending, not the candles. This bench makes those by SQL in about a minute:

1. a template database, <your database>_bench_status_tmpl (migrated, bootstrapped; kept, and
   reused by --reuse), holding N NASDAQ/NYSE symbols linked at write with B daily candles each,
   one import job with one file run per symbol (created queued by one statement, then finished
   in chunks of 1,000 as the import's workers finish them: the run trigger and the import's own
   counters leave their metric deltas, as the import does: 4 a file, 15 before a run's duration
   became one delta), an `enrichment_status` and a
   compute-log row per series, and B quality days per series written by one statement per chunk
   of 500 series, each spanning the year (the feature step's summary deltas: markets x days x
   metrics a chunk, 218,000 at 100,000 series here). Nothing is folded: the deltas wait as the
   writers left them. Triggers keep every summary, as in production.
2. each measurement on a fresh copy of it (<your database>_bench_status, CREATE DATABASE ...
   TEMPLATE), in a child process of its own, as `bench_scale.py`'s status step does:
   /api/etl/status, the admin dashboard (/admin/) and /metrics through Django's test client, a
   first call then --repeat calls (their median is the figure), with the queries of each.
   --fold: first fold what is pending, as each pipeline step now does at its end and the
   `metrics-fold` and `summary-fold` schedules do every minute and five minutes.

Prints one line per page and the load average; --json writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mytrader.settings")
os.environ.setdefault("DEBUG", "on")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from psycopg import sql  # noqa: E402

PAGES = {"api_etl_status": "/api/etl/status", "dashboard": "/admin/", "metrics": "/metrics"}
FILES_CHUNK = 1_000  # file runs finished per statement
SERIES_CHUNK = 500  # series per quality statement

GENERATE = """
CREATE TEMP TABLE bench_symbols AS
SELECT g, CASE WHEN g %% 2 = 0 THEN 'NASDAQ' ELSE 'NYSE' END AS market,
       'S' || lpad(g::text, 6, '0') AS ticker
FROM generate_series(1, %(n)s) g;
INSERT INTO symbols (created_at, updated_at, ticker, base_currency, quote_currency, name, sector, industry, country,
                     description, website, category, is_active, source, inference_confidence, asset_class_id, market_id)
SELECT now(), now(), b.ticker, b.ticker, 'USD', '', '', '', '', '', '', '', true, 'discovered', 0.85, ac.id, m.id
FROM bench_symbols b JOIN markets m ON m.code = b.market JOIN asset_classes ac ON ac.code = 'STOCK_' || b.market;
CREATE TEMP TABLE bench_added AS
SELECT s.id, s.ticker, m.code AS market, ac.code AS asset_class
FROM symbols s JOIN markets m ON m.id = s.market_id JOIN asset_classes ac ON ac.id = s.asset_class_id
WHERE s.ticker IN (SELECT ticker FROM bench_symbols);
INSERT INTO import_files (requested_by, created_at, progress_done, cancel_requested, error, rows_read, rows_inserted,
                          rows_duplicates, rows_updated, rows_rejected, rows_changed, status, relpath, market, ticker,
                          layout, timeframe, size, sha256, attempts, claimed_by, priority, job_id)
SELECT 'bench-status', now(), 0, false, '', 0, 0, 0, 0, 0, 0, 'queued',
       'initial/' || a.market || '/' || a.ticker || '.csv', a.market, a.ticker, 'standard', '1d', 1000,
       md5(a.ticker), 0, '', 0, %(job)s
FROM bench_added a;
INSERT INTO market_data (ts, updated_at, symbol_id, import_file_id, ticker, market, timeframe, open, high, low, close,
                         volume, adj_close, asset_class)
SELECT timestamptz '2024-01-02' + d * interval '1 day', now(), a.id, f.id, a.ticker, a.market, '1d', 10, 11, 9, 10.5,
       1000, 10.5, a.asset_class
FROM bench_added a JOIN import_files f ON f.job_id = %(job)s AND f.ticker = a.ticker AND f.market = a.market
CROSS JOIN generate_series(0, %(bars)s - 1) d;
INSERT INTO enrichment_status (timeframe, state, rows, first_ts, last_ts, last_computed_at, avg_quality_score,
                               completeness, last_error, updated_at, symbol_id)
SELECT '1d', 'ok', %(bars)s, timestamptz '2024-01-02', timestamptz '2024-01-02' + (%(bars)s - 1) * interval '1 day',
       now(), 100, 1.0, '', now(), a.id
FROM bench_added a;
INSERT INTO enrichment_compute_log (timeframe, mode, rows_read, rows_written, duration_ms, succeeded, error,
                                    created_at, symbol_id)
SELECT '1d', 'full', %(bars)s, %(bars)s, 5, true, '', now(), a.id FROM bench_added a;
"""
FINISH_FILES = """
UPDATE import_files SET status = 'succeeded', started_at = now() - interval '0.4 s', finished_at = now(),
       progress_done = %(bars)s, progress_total = %(bars)s, rows_read = %(bars)s, rows_inserted = %(bars)s
WHERE job_id = %(job)s AND id IN (SELECT id FROM import_files WHERE job_id = %(job)s AND status = 'queued'
                                  ORDER BY id LIMIT %(chunk)s)
"""
# The import's own counters, per file (batchimport_files_total, batchimport_rows_total).
FILE_COUNTERS = """
INSERT INTO metric_deltas (family, sample, type, labels, op, value)
SELECT 'batchimport_files', 'batchimport_files_total', 'counter', '{"status": "succeeded"}'::jsonb, 'add', 1
FROM generate_series(1, %(files)s)
UNION ALL
SELECT 'batchimport_rows', 'batchimport_rows_total', 'counter', '{"outcome": "inserted"}'::jsonb, 'add', %(bars)s
FROM generate_series(1, %(files)s)
"""
QUALITY_CHUNK = """
INSERT INTO data_quality_metrics (timeframe, day, expected_bars, actual_bars, completeness, gaps, volume_anomalies,
                                  ohlc_inconsistencies, outside_session, avg_quality_score, computed_at, symbol_id)
SELECT '1d', date '2024-01-01' + ((a.id * 37 + d * 36) %% 363)::int, 1, 1, 1.0, 0, 0, 0, 0, 100, now(), a.id
FROM bench_added a CROSS JOIN generate_series(0, %(bars)s - 1) d
WHERE a.id %% %(chunks)s = %(chunk)s
"""
COUNTS = """
SELECT (SELECT count(*) FROM symbols), (SELECT count(*) FROM market_data), (SELECT count(*) FROM import_files),
       (SELECT count(*) FROM metric_deltas), (SELECT count(*) FROM integrity_summary_deltas),
       (SELECT count(*) FROM integrity_symbol_tally_deltas)
"""


def _admin_connection():
    import psycopg

    db = settings.DATABASES["default"]
    return psycopg.connect(
        dbname="postgres", user=db["USER"], host=db["HOST"], port=db["PORT"], password=db["PASSWORD"], autocommit=True
    )


def _exists(name: str) -> bool:
    with _admin_connection() as admin:
        return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def _use(name: str) -> None:
    connection.close()
    settings.DATABASES["default"]["NAME"] = name
    connection.settings_dict["NAME"] = name


def build_template(name: str, symbols: int, bars: int) -> dict:
    """Create, migrate and bootstrap `name`, then fill it (see the module docstring)."""
    from batchimport.models import ImportJob
    from etl.services import reference_data_bootstrap
    from etl.services.partitions import partitions_ensure

    db = settings.DATABASES["default"]
    db["TEST"] = {**db.get("TEST", {}), "NAME": name}
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False, keepdb=False)
    reference_data_bootstrap()
    for table in ("market_data", "market_data_v2"):
        partitions_ensure(table=table, first=datetime(2024, 1, 1, tzinfo=UTC), last=datetime(2024, 12, 31, tzinfo=UTC))
    started = time.perf_counter()
    job = ImportJob.objects.create(kind="market", market="NASDAQ", status="succeeded", path="initial")
    params = {"n": symbols, "bars": bars, "job": job.pk}
    with connection.cursor() as cur:
        for statement in GENERATE.split(";\n"):
            if statement.strip():
                cur.execute(statement, params)
        for _ in range(0, symbols, FILES_CHUNK):
            cur.execute(FINISH_FILES, {**params, "chunk": FILES_CHUNK})
        cur.execute(FILE_COUNTERS, {**params, "files": symbols})
        chunks = max(1, symbols // SERIES_CHUNK)
        for chunk in range(chunks):
            cur.execute(QUALITY_CHUNK, {**params, "chunks": chunks, "chunk": chunk})
        cur.execute("ANALYZE")
        cur.execute(COUNTS)
        counts = dict(
            zip(
                ("symbols", "candles", "import_files", "metric_deltas", "summary_deltas", "tally_deltas"),
                cur.fetchone(),
                strict=True,
            )
        )
    connection.close()
    return {**counts, "seconds": round(time.perf_counter() - started, 1)}


def copy_of(template: str, name: str) -> None:
    with _admin_connection() as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))


def measure(repeat: int, fold: bool) -> dict:
    """In the child: the pages, a first call then `repeat` more, with their queries."""
    user, _ = get_user_model().objects.get_or_create(
        username="bench-status", defaults={"is_staff": True, "is_superuser": True}
    )
    folded = {}
    if fold:
        from etl import events, summaries

        started = time.perf_counter()
        folded = {"metric_deltas": events.metrics_fold(), "summary": summaries.summaries_fold(vacuum=True).moved}
        folded["seconds"] = round(time.perf_counter() - started, 2)
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    pages = {}
    for name, url in PAGES.items():
        timings, queries, codes = [], [], set()
        for _ in range(repeat + 1):
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.get(url, REMOTE_ADDR="127.0.0.1")
                timings.append((time.perf_counter() - started) * 1000)
            queries.append(len(captured.captured_queries))
            codes.add(response.status_code)
        pages[name] = {
            "url": url,
            "first_ms": round(timings[0], 1),
            "median_ms": round(statistics.median(timings[1:]), 1),
            "runs_ms": [round(t, 1) for t in timings[1:]],
            "queries_first": queries[0],
            "queries": queries[-1],
            "status_codes": sorted(codes),
        }
    return {"folded": folded, "pages": pages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=100_000)
    parser.add_argument("--bars", type=int, default=10, help="daily candles per symbol (default 10)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--fold", action="store_true", help="fold what is pending first, as the writers now do")
    parser.add_argument("--reuse", action="store_true", help="measure on the template a previous run built")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _use(args.child)
        print(json.dumps(measure(args.repeat, args.fold)))
        return
    base = settings.DATABASES["default"]["NAME"]
    template, name = f"{base}_bench_status_tmpl", f"{base}_bench_status"
    figures = {"symbols": args.symbols, "bars": args.bars, "fold": args.fold}
    if not (args.reuse and _exists(template)):
        print(f"building {template}: {args.symbols:,} symbols x {args.bars} bars ...", flush=True)
        figures["built"] = build_template(template, args.symbols, args.bars)
        print(f"  {json.dumps(figures['built'])}", flush=True)
    copy_of(template, name)
    command = [sys.executable, __file__, "--child", name, "--repeat", str(args.repeat)]
    figures["load_before"] = os.getloadavg()
    child = subprocess.run(command + (["--fold"] if args.fold else []), capture_output=True, text=True, check=False)
    figures["load_after"] = os.getloadavg()
    if child.returncode:
        raise SystemExit(child.stderr[-3000:])
    figures.update(json.loads(child.stdout.strip().splitlines()[-1]))
    with _admin_connection() as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
    load = " ".join(f"{x:.2f}" for x in figures["load_before"])
    print(f"{args.symbols:,} symbols, fold first: {args.fold} {figures['folded'] or ''}; load {load}")
    for page, p in figures["pages"].items():
        print(
            f"  {page:15} first {p['first_ms']:8.1f} ms  median {p['median_ms']:7.1f} ms"
            f"  queries {p['queries_first']}/{p['queries']}  {p['status_codes']}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
