"""Benchmark of the integrity summaries (docs/summaries.md has the figures).

In a scratch database (<your database>_bench_summary, created and dropped here):

1. status doors at two sizes: /api/etl/status, /api/etl/symbol-sync-status,
   /api/etl/enrichment-status, /api/v1/enrichment/metrics, the correction metrics, the
   admin dashboard and /metrics, each the median of --repeat requests through Django's
   test client (middleware, auth, rendering included), beside the old way, the scan of
   market_data and symbols the status did before, timed once in the same run;
2. what the triggers cost the writers' statements — the import's INSERT … SELECT of
   --import-rows staged rows, a correction's UPDATE of every mismatched candle, a retention
   DELETE — each run with the summary triggers on and off in turn (rolled back every time),
   the median of --rounds, with the triggers' own time read from EXPLAIN ANALYZE of the same
   execution (a figure the other sessions on a shared machine do not blur);
3. the first status read after a sync (it folds the sync's pending deltas), the fold's
   rate, and the full recount at each size;
4. two writers of one market at once: with the insert-only deltas the second does not
   wait; with one counter row per market updated in place it waits for the first's commit.

    DATABASE_URL=postgres://... DEBUG=on .venv/bin/python bench/bench_summary.py \
        [--small 1000000] [--large 10000000] [--bars 250] [--import-rows 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mytrader.settings")
os.environ.setdefault("DEBUG", "on")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection, transaction  # noqa: E402

DOORS = (
    "/api/etl/status",
    "/api/etl/symbol-sync-status",
    "/api/etl/enrichment-status",
    "/api/v1/enrichment/metrics",
    "/api/etl/asset-class-correction/metrics",
    "/admin/",
    "/metrics",
)
MARKETS = (("NASDAQ", "STOCK_NASDAQ", "NASDAQ"), ("NYSE", "STOCK_NYSE", "NYSE"), ("BINANCE", "CRYPTO", "Crypto"))
TRIGGERS = ("integrity_summary_ins", "integrity_summary_upd", "integrity_summary_del")
OLD_STATUS = (
    "SELECT COALESCE(m.code, md.market), count(*), count(*) FILTER (WHERE md.symbol_id IS NULL),"
    " count(*) FILTER (WHERE ac.code IS NOT NULL),"
    " count(*) FILTER (WHERE ac.code IS NOT NULL AND md.asset_class = ac.code)"
    " FROM market_data md LEFT JOIN symbols s ON s.id = md.symbol_id LEFT JOIN markets m ON m.id = s.market_id"
    " LEFT JOIN asset_classes ac ON ac.id = s.asset_class_id GROUP BY 1",
    "SELECT m.code, count(*) FILTER (WHERE s.is_active),"
    " count(*) FILTER (WHERE s.is_active AND (s.enriched_at IS NOT NULL OR s.name <> '')),"
    " avg(s.data_quality_score) FILTER (WHERE s.is_active)"
    " FROM symbols s JOIN markets m ON m.id = s.market_id GROUP BY 1",
)


def sql(statement: str, params=None) -> list:
    with connection.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall() if cur.description else []


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def candles() -> int:
    return sql("SELECT reltuples::bigint FROM pg_class WHERE oid = 'market_data'::regclass")[0][0]


def add_symbols(first: int, count: int) -> None:
    """`count` symbols T<first>… spread over three markets, with their asset class."""
    values = ", ".join(f"({i}, '{m}', '{c}')" for i, (m, c, _) in enumerate(MARKETS))
    sql(
        "INSERT INTO symbols (ticker, market_id, asset_class_id, base_currency, quote_currency, name, sector,"  # noqa: S608
        " industry, country, description, website, category, is_active, source, created_at, updated_at)"
        " SELECT 'T' || g, m.id, ac.id, '', '', CASE WHEN g %% 3 = 0 THEN 'Name ' || g ELSE '' END, '', '', '', '',"
        " '', '', TRUE, 'discovered', now(), now()"
        f" FROM generate_series(%s, %s) g JOIN (VALUES {values}) AS l(k, market, cls) ON l.k = g %% 3"
        " JOIN markets m ON m.code = l.market JOIN asset_classes ac ON ac.code = l.cls",
        [first, first + count - 1],
    )


def add_candles(first: int, count: int, bars: int, *, linked: bool) -> None:
    """`bars` daily candles for symbols T<first>…, 1 M rows per statement (as an import's would be):
    linked at write, or raw (the sync links them); the asset class as the folder names it."""
    folder = "CASE m.code " + " ".join(f"WHEN '{m}' THEN '{f}'" for m, _, f in MARKETS) + " END"
    per = max(1, 1_000_000 // bars)
    for start in range(first, first + count, per):
        end = min(first + count, start + per) - 1
        sql(
            "INSERT INTO market_data (ticker, market, timeframe, ts, open, high, low, close, volume, asset_class,"  # noqa: S608
            " symbol_id)"
            f" SELECT s.ticker, m.code, '1d', timestamptz '2020-01-01 00:00+00' + d * interval '1 day', 10, 12, 9, 11,"
            f" 1000 + d, {folder}, {'s.id' if linked else 'NULL'}"
            " FROM symbols s JOIN markets m ON m.id = s.market_id, generate_series(0, %s - 1) d"
            " WHERE s.ticker = ANY(%s)",
            [bars, [f"T{i}" for i in range(start, end + 1)]],
        )
        print(f"  {(end + 1 - first) * bars:,} candles of {count * bars:,}", flush=True)


def door_times(repeat: int) -> dict[str, float]:
    """Median milliseconds of each door (the first request warms caches and is not counted)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    out = {}
    for url in DOORS:
        assert client.get(url, REMOTE_ADDR="127.0.0.1").status_code == 200, url
        times = [timed(lambda url=url: client.get(url, REMOTE_ADDR="127.0.0.1")) for _ in range(repeat)]
        out[url] = 1000 * statistics.median(times)
    return out


def old_status_seconds() -> float:
    return timed(lambda: [sql(statement) for statement in OLD_STATUS])


def measure_size(label: str, repeat: int) -> dict:
    from etl.services.summaries import summary_recount

    sql("VACUUM ANALYZE market_data")
    sql("VACUUM ANALYZE symbols")
    doors = door_times(repeat)
    old = old_status_seconds()
    recount = summary_recount(requested_by="bench")
    assert recount.drift_count == 0, recount.drift[:5]
    row = {"label": label, "candles": candles(), "doors": doors, "old": old}
    row["recount"] = sum(s["seconds"] for s in recount.sources.values())
    return row


def sync_and_first_read() -> dict:
    """The sync links every raw candle; the first status read folds what it left pending."""
    from etl import selectors, services

    seconds = timed(lambda: services.symbols_sync(batch_size=1000))
    pending = sql("SELECT count(*) FROM integrity_symbol_tally_deltas")[0][0]
    first = timed(selectors.integrity_status)
    second = timed(selectors.integrity_status)
    return {"sync": seconds, "pending": pending, "first_read": first, "second_read": second}


def fold_rate() -> float:
    """Deltas folded per second: the per-symbol tallies the reads leave to the schedule."""
    from etl.summaries import summaries_fold

    pending = sql("SELECT count(*) FROM integrity_symbol_tally_deltas")[0][0]
    seconds = timed(summaries_fold)
    return pending / seconds if seconds and pending else 0.0


def set_triggers(enabled: bool) -> None:
    verb = "ENABLE" if enabled else "DISABLE"
    for name in TRIGGERS:
        sql(f"ALTER TABLE market_data {verb} TRIGGER {name}")


class _Undo(Exception):
    """Raised to roll a measured statement back."""


def explain(statement: str, *, triggers: bool) -> tuple[float, float]:
    """(statement ms, summary triggers' own ms) of one EXPLAIN ANALYZE, rolled back."""
    result = (0.0, 0.0)
    try:
        with transaction.atomic():
            if not triggers:
                set_triggers(False)  # inside the transaction: undone with it
            plan = sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement)[0][0][0]
            own = sum(t["Time"] for t in plan.get("Triggers", []) if t["Trigger Name"] in TRIGGERS)
            result = (plan["Execution Time"], own)
            raise _Undo
    except _Undo:
        pass
    return result


STATEMENTS = {
    # The import's final statement (batchimport.services.loader INSERT_FRESH_SQL), from a staged file.
    "import INSERT ... SELECT, {n:,} rows": (
        "INSERT INTO market_data (ticker, market, timeframe, ts, open, high, low, close, volume, adj_close,"
        " asset_class, source_file, created_at, updated_at)"
        " SELECT 'STAGED', 'BINANCE', '1m', ts, open, high, low, close, volume, adj_close, 'Crypto', 'Crypto/S.csv',"
        " now(), now() FROM bench_stage"
    ),
    # A correction's UPDATE over every candle whose class differs from its symbol's.
    "correction UPDATE, {n:,} rows": (
        "UPDATE market_data md SET asset_class = ac.code, updated_at = now()"
        " FROM symbols s JOIN asset_classes ac ON ac.id = s.asset_class_id"
        " WHERE s.id = md.symbol_id AND md.asset_class IS DISTINCT FROM ac.code"
    ),
    "retention DELETE, {n:,} rows": "DELETE FROM market_data WHERE ts < timestamptz '2020-04-10 00:00+00'",
}


def statement_costs(rows: int, rounds: int) -> dict[str, dict[str, float]]:
    """Each writer's statement with the summary triggers on and off in turn (rolled back each
    time): the statement's time, and the triggers' own time in the same execution, which the
    other sessions on a shared machine do not blur."""
    sql(
        "CREATE TABLE bench_stage AS SELECT timestamptz '2020-01-01 00:00+00' + g * interval '1 minute' AS ts,"
        " (100 + g %% 7)::numeric(28, 10) AS open, (101 + g %% 7)::numeric(28, 10) AS high,"
        " (99 + g %% 7)::numeric(28, 10) AS low, (100 + g %% 5)::numeric(28, 10) AS close,"
        " (1000 + g)::numeric(30, 8) AS volume, (100 + g %% 5)::numeric(28, 10) AS adj_close"
        " FROM generate_series(1, %s) g",
        [rows],
    )
    sql("VACUUM ANALYZE bench_stage")
    out = {}
    for label, statement in STATEMENTS.items():
        on, off, own = [], [], []
        for _ in range(rounds):
            ms, trig = explain(statement, triggers=True)
            on.append(ms)
            own.append(trig)
            off.append(explain(statement, triggers=False)[0])
        n = rows if label.startswith("import") else None
        out[label.format(n=n if n else touched(statement))] = {
            "on": statistics.median(on),
            "off": statistics.median(off),
            "trigger": statistics.median(own),
        }
    sql("DROP TABLE bench_stage")
    return out


def touched(statement: str) -> int:
    """How many rows a statement changes (counted in a rolled-back run)."""
    count = 0
    try:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(statement)
            count = cur.rowcount
            raise _Undo
    except _Undo:
        pass
    return count


def contention() -> dict[str, float]:
    """Seconds the second of two writers of one market waits while the first holds its transaction
    open for one second: with the summary's deltas, and with a per-market counter row."""
    import psycopg

    params = connection.get_connection_params()
    keys = ("host", "port", "user", "password", "dbname")
    sql("CREATE TABLE IF NOT EXISTS bench_counter (market text PRIMARY KEY, candles bigint)")
    sql("INSERT INTO bench_counter VALUES ('BINANCE', 0) ON CONFLICT DO NOTHING")
    insert = (
        "INSERT INTO market_data (ticker, market, timeframe, ts, open, high, low, close, volume)"
        " SELECT %s, 'BINANCE', '1h', timestamptz '2024-01-01 00:00+00' + g * interval '1 hour', 1, 1, 1, 1, 1"
        " FROM generate_series(0, 999) g"
    )
    counter = "UPDATE bench_counter SET candles = candles + 1000 WHERE market = 'BINANCE'"
    out = {}
    for name, extra in (("deltas", None), ("counter_row", counter)):
        with psycopg.connect(**{k: v for k, v in params.items() if k in keys}) as a:
            with psycopg.connect(**{k: v for k, v in params.items() if k in keys}) as b:
                a.execute(insert, [f"CONT_A_{name}"])
                if extra:
                    a.execute(extra)
                timer = threading.Timer(1.0, a.commit)
                timer.start()
                started = time.perf_counter()
                b.execute(insert, [f"CONT_B_{name}"])
                if extra:
                    b.execute(extra)
                out[name] = time.perf_counter() - started
                b.commit()
                timer.join()
    sql("DELETE FROM market_data WHERE ticker LIKE 'CONT_%%'")
    sql("DROP TABLE bench_counter")
    return out


def report(sizes: list[dict], sync: dict, costs: dict, cont: dict, rate: float, args) -> None:
    print()
    print(f"status doors, median of {args.repeat} requests (ms), and the old scan (ms):")
    head = "".join(f"{s['candles']:>16,}" for s in sizes)
    print(f"  {'candles':<42}{head}")
    for url in DOORS:
        print(f"  {url:<42}" + "".join(f"{s['doors'][url]:>16.1f}" for s in sizes))
    print(f"  {'old status scan (market_data + symbols)':<42}" + "".join(f"{1000 * s['old']:>16.0f}" for s in sizes))
    print(f"  {'full recount (every source)':<42}" + "".join(f"{1000 * s['recount']:>16.0f}" for s in sizes))
    ratio = max(sizes[-1]["doors"][u] / sizes[0]["doors"][u] for u in DOORS)
    print(f"  largest ratio large/small over the doors: {ratio:.2f}")
    print(f"sync of the raw candles: {sync['sync']:.1f} s, leaving {sync['pending']:,} per-symbol tally deltas;")
    print(
        f"  first status read {1000 * sync['first_read']:.0f} ms (folds them), next {1000 * sync['second_read']:.1f} ms"
    )
    print(f"fold of per-symbol tallies: {rate:,.0f} deltas/s")
    if costs:
        print(f"the writers' statements, median of {args.rounds} (ms): triggers on, off, the triggers' own time")
    for label, c in costs.items():
        print(
            f"  {label:<40} {c['on']:>9.0f} {c['off']:>9.0f} {c['trigger']:>8.0f}"
            f"  (own {100 * c['trigger'] / c['on']:.1f} %, on/off {c['on'] / c['off']:.2f})"
        )
    if cont:
        print(
            f"second writer of one market while the first is open 1 s: deltas {cont['deltas']:.3f} s,"
            f" counter row {cont['counter_row']:.3f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=1_000_000)
    parser.add_argument("--large", type=int, default=10_000_000)
    parser.add_argument("--bars", type=int, default=250)
    parser.add_argument("--import-rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--skip-costs", action="store_true", help="only the doors, the sync, the fold and the recount")
    args = parser.parse_args()
    from etl.services import reference_data_bootstrap

    reference_data_bootstrap()
    small_symbols, large_symbols = args.small // args.bars, args.large // args.bars
    print(f"{small_symbols:,} symbols x {args.bars} bars, raw (the sync links them) ...", flush=True)
    add_symbols(0, small_symbols)
    add_candles(0, small_symbols, args.bars, linked=False)
    sync = sync_and_first_read()
    rate = fold_rate()
    sizes = [measure_size("small", args.repeat)]
    costs, cont = {}, {}
    if not args.skip_costs:
        print("the writers' statements, summary triggers on and off in turn ...", flush=True)
        costs = statement_costs(args.import_rows, args.rounds)
        cont = contention()
    print(f"growing to {large_symbols:,} symbols x {args.bars} bars, linked at write ...", flush=True)
    add_symbols(small_symbols, large_symbols - small_symbols)
    add_candles(small_symbols, large_symbols - small_symbols, args.bars, linked=True)
    sizes.append(measure_size("large", args.repeat))
    report(sizes, sync, costs, cont, rate, args)


if __name__ == "__main__":
    db = settings.DATABASES["default"]
    db["TEST"] = {**db.get("TEST", {}), "NAME": f"{db['NAME']}_bench_summary"}
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        main()
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
