"""Where the hourly run's time goes, statement by statement: one step of the new-bar run (import or
features) on a fresh copy of the database `bench_scale.py --keep` saved before its new-bar step,
each SQL statement timed on the client and summed by its first words, the feature step on one
worker (so that one connection runs every statement). --profile adds a cProfile of the process.

    .venv/bin/python bench/bench_newbar_stmt.py [N] [B] [--step import|features] [--top 25] [--profile]

Needs a `bench_scale.py N B --keep` run that reached `newbar` (its database
<your database>_bench_scale_before_newbar, migrated to the code's migrations, and the files in
var/bench/scale/N<N>-B<B>/). The steps before the measured one run untimed. Works on
<your database>_newbar_stmt, dropped at the end.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import logging
import os
import pstats
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mytrader.settings")
os.environ.setdefault("DEBUG", "on")
BEFORE = {"import": (), "features": ("import", "sync", "correct")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=5000)
    parser.add_argument("bars", type=int, nargs="?", default=250)
    parser.add_argument("--step", choices=sorted(BEFORE), default="features")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    os.environ["DATA_ROOT"] = str(ROOT / "var" / "bench" / "scale" / f"N{args.n}-B{args.bars}")

    import django

    django.setup()
    logging.disable(logging.INFO)
    from bench_newbar_cpu import use_copy
    from django.conf import settings
    from django.db import connection

    from enrichment.candles.services import feature_workers
    from etl.services import pipeline_run

    feature_workers.run_overlapped.__kwdefaults__["workers"] = 1
    base = settings.DATABASES["default"]["NAME"]
    snapshot, work = f"{base}_bench_scale_before_newbar", f"{base}_newbar_stmt"
    params = connection.get_connection_params()
    admin = {k: v for k, v in params.items() if k in ("user", "password", "host", "port")}
    use_copy(admin, snapshot=snapshot, work=work)
    try:
        for step in BEFORE[args.step]:
            pipeline_run(steps=[step], options={"path": "hourly"}, trigger="command", requested_by="bench")
        _measure(args)
    finally:
        connection.close()
        with psycopg.connect(**admin, dbname="postgres", autocommit=True) as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(work)))


def _measure(args: argparse.Namespace) -> None:
    """Run the step with every statement timed; print the sums, largest first."""
    from django.db import connection

    from etl.services import pipeline_run

    times, counts = collections.Counter(), collections.Counter()

    def timed(execute, sql_text, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql_text, params, many, context)
        finally:
            key = " ".join(str(sql_text).split())[:80]
            times[key] += time.perf_counter() - started
            counts[key] += 1

    profile = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    with connection.execute_wrapper(timed):
        if profile:
            profile.enable()
        result = pipeline_run(steps=[args.step], options={"path": "hourly"}, trigger="command", requested_by="bench")
        if profile:
            profile.disable()
    wall = time.perf_counter() - started
    print(
        f"{args.step} {result.status}: wall {wall:.2f} s, statements {sum(times.values()):.2f} s, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    for key, seconds in times.most_common(args.top):
        print(f"{seconds:7.3f} s {counts[key]:6d}x  {key}")
    if profile:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top * 2)


if __name__ == "__main__":
    main()
