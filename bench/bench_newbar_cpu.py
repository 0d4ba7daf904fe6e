"""CPU per step of the hourly run (import, sync, correct, features over one new bar per symbol):
this process's CPU time plus its PostgreSQL backend's, and the wall time, on a fresh copy of the
database `bench_scale.py --keep` saved before its new-bar step. CPU time moves much less than wall
time when other work shares the machine, so two versions of the code can be compared on a busy
machine by running this from each checkout in turn.

    .venv/bin/python bench/bench_newbar_cpu.py [N] [B] [--repeat 2]

Needs a `bench_scale.py N B --keep` run that reached `newbar` (its database
<your database>_bench_scale_before_newbar and the files in var/bench/scale/N<N>-B<B>/). Works on
<your database>_newbar_cpu, dropped at the end.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mytrader.settings")
os.environ.setdefault("DEBUG", "on")
STEPS = ("import", "sync", "correct", "features")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=5000)
    parser.add_argument("bars", type=int, nargs="?", default=250)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    data_dir = ROOT / "var" / "bench" / "scale" / f"N{args.n}-B{args.bars}"
    os.environ["DATA_ROOT"] = str(data_dir)  # read by the settings: before django.setup()

    import django

    django.setup()
    logging.disable(logging.INFO)
    from django.conf import settings
    from django.db import connection

    base = settings.DATABASES["default"]["NAME"]
    snapshot, work = f"{base}_bench_scale_before_newbar", f"{base}_newbar_cpu"
    params = connection.get_connection_params()
    admin = {k: v for k, v in params.items() if k in ("user", "password", "host", "port")}
    for number in range(args.repeat):
        use_copy(admin, snapshot=snapshot, work=work)
        print(f"run {number + 1}, load {os.getloadavg()[0]:.1f}: " + " | ".join(_step(s) for s in STEPS), flush=True)
        connection.close()
    with psycopg.connect(**admin, dbname="postgres", autocommit=True) as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(work)))


def use_copy(admin: dict, *, snapshot: str, work: str) -> None:
    """Make `work` a fresh copy of `snapshot` (CREATE DATABASE … TEMPLATE) and point Django at it."""
    from django.conf import settings
    from django.db import connection

    with psycopg.connect(**admin, dbname="postgres", autocommit=True) as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(work)))
        cur.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(*map(sql.Identifier, (work, snapshot))))
    settings.DATABASES["default"]["NAME"] = work
    connection.close()
    connection.settings_dict["NAME"] = work


def _backend_cpu() -> float:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _step(step: str) -> str:
    from etl.services import pipeline_run

    backend, process, wall = _backend_cpu(), time.process_time(), time.perf_counter()
    result = pipeline_run(steps=[step], options={"path": "hourly"}, trigger="command", requested_by="bench-newbar-cpu")
    wall, process, backend = time.perf_counter() - wall, time.process_time() - process, _backend_cpu() - backend
    if result.status != "succeeded":
        raise SystemExit(f"{step}: {result.status} {result.error}")
    return f"{step} CPU {process + backend:.2f} s (Python {process:.2f}, PostgreSQL {backend:.2f}), wall {wall:.2f} s"


if __name__ == "__main__":
    main()
