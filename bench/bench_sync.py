"""Symbol sync benchmark: our `symbols_sync` against hand-written SQL doing the
same work (`INSERT … SELECT DISTINCT … ON CONFLICT` + `UPDATE … FROM`).

1,000,000 candles carrying 50,000 (ticker, market) pairs with no symbol, over
BINANCE, BIST, NASDAQ and NYSE. Runs in a scratch database
(<your database>_bench_sync) created and dropped by the script. Rounds
alternate which side goes first; the best time of each side is compared
(the machine is shared, so single runs vary a lot).

    .venv/bin/python bench/bench_sync.py [--candles 1000000] [--pairs 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mytrader.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import DatabaseError, connection  # noqa: E402
from django.test.utils import setup_databases, teardown_databases  # noqa: E402

from etl.services.partitions import partitions_ensure  # noqa: E402

GENERATE_SQL = """
INSERT INTO market_data (ticker, market, timeframe, ts, open, high, low, close, volume, updated_at)
SELECT p.ticker, p.market, '1d', timestamptz '2020-01-01' + d * interval '1 day', 10, 12, 9, 11, 1000, now()
FROM (
    SELECT CASE i %% 4
             WHEN 0 THEN 'C' || code || 'USDT'
             WHEN 1 THEN 'B' || code
             WHEN 2 THEN 'N' || code
             ELSE 'Y' || code END AS ticker,
           (ARRAY['BINANCE', 'BIST', 'NASDAQ', 'NYSE'])[i %% 4 + 1] AS market
    FROM (
        SELECT i, chr(65 + (i / 4 / 676) %% 26) || chr(65 + (i / 4 / 26) %% 26) || chr(65 + (i / 4) %% 26)
                  || CASE WHEN i / 4 >= 17576 THEN chr(65 + (i / 4 / 17576) %% 26) ELSE '' END AS code
        FROM generate_series(0, %(pairs)s - 1) AS i
    ) c
) p
CROSS JOIN generate_series(0, %(bars)s - 1) AS d
"""

HAND_INSERT = """
INSERT INTO symbols (ticker, market_id, asset_class_id, base_currency, quote_currency, source, is_active,
                     name, sector, industry, country, description, website, category, created_at, updated_at)
SELECT DISTINCT md.ticker, m.id, m.default_asset_class_id, '', m.currency, 'discovered', TRUE,
       '', '', '', '', '', '', '', now(), now()
FROM market_data md JOIN markets m ON m.code = md.market
WHERE md.symbol_id IS NULL
ON CONFLICT (ticker, market_id) DO NOTHING
"""

HAND_UPDATE = """
UPDATE market_data md SET symbol_id = s.id
FROM symbols s JOIN markets m ON m.id = s.market_id
WHERE md.symbol_id IS NULL AND s.ticker = md.ticker AND m.code = md.market
"""


def execute(sql: str, params=None) -> int:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.rowcount


def scalar(sql: str):
    with connection.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def vacuum() -> None:
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE market_data")
        cur.execute("VACUUM ANALYZE symbols")


def reset() -> None:
    execute("UPDATE market_data SET symbol_id = NULL WHERE symbol_id IS NOT NULL")
    execute("DELETE FROM symbols")
    vacuum()
    # Start each timed run from a fresh checkpoint, so neither side pays for the other's WAL
    # (needs superuser or pg_checkpoint; without it the runs are only noisier).
    try:
        execute("CHECKPOINT")
    except DatabaseError:
        pass


def run_ours() -> tuple[float, int, int]:
    from etl import services

    t0 = time.perf_counter()
    result = services.symbols_sync()
    elapsed = time.perf_counter() - t0
    assert result.candles_without_symbol == 0, result
    return elapsed, result.symbols_created, result.candles_linked


def run_hand() -> tuple[float, int, int]:
    t0 = time.perf_counter()
    created = execute(HAND_INSERT)
    linked = execute(HAND_UPDATE)
    elapsed = time.perf_counter() - t0
    assert scalar("SELECT count(*) FROM market_data WHERE symbol_id IS NULL") == 0
    return elapsed, created, linked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bars = max(1, args.candles // args.pairs)

    db = settings.DATABASES["default"]
    db.setdefault("TEST", {})["NAME"] = f"{db['NAME']}_bench_sync"
    old_config = setup_databases(verbosity=0, interactive=False)
    try:
        from etl import services

        services.reference_data_bootstrap()
        t0 = time.perf_counter()
        start = datetime(2020, 1, 1, tzinfo=UTC)
        partitions_ensure(table="market_data", first=start, last=start + timedelta(days=bars))
        execute(GENERATE_SQL, {"pairs": args.pairs, "bars": bars})
        vacuum()
        candles = scalar("SELECT count(*) FROM market_data")
        pairs = scalar("SELECT count(DISTINCT (ticker, market)) FROM market_data")
        print(
            f"generated {candles:,} candles, {pairs:,} unsynced (ticker, market) pairs"
            f" in {time.perf_counter() - t0:.1f}s"
        )

        best = {"ours": float("inf"), "hand": float("inf")}
        sides = {"ours": run_ours, "hand": run_hand}
        for r in range(args.rounds):
            order = ("ours", "hand") if r % 2 else ("hand", "ours")
            for name in order:
                reset()
                elapsed, created, linked = sides[name]()
                assert created == pairs and linked == candles, (name, created, linked)
                best[name] = min(best[name], elapsed)
                print(
                    f"round {r + 1} {name:<4}: {elapsed:7.2f}s  {created:,} symbols created, "
                    f"{linked:,} candles linked ({linked / elapsed:,.0f} candles/s)"
                )
        # A second sync finds nothing to do.
        again = services.symbols_sync()
        assert (again.symbols_created, again.candles_linked) == (0, 0)
        ratio = best["ours"] / best["hand"]
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"symbols_sync (best):     {best['ours']:.2f}s  {candles / best['ours']:,.0f} candles/s")
        print(f"hand-written SQL (best): {best['hand']:.2f}s  {candles / best['hand']:,.0f} candles/s")
        print(f"ratio ours/hand: {ratio:.2f}x (target <= 1.5x)   peak RSS of this process: {peak_mb:.0f} MB")
        print(f"idempotent re-run: {again.duration_seconds:.2f}s, 0 created, 0 linked")
    finally:
        connection.close()
        teardown_databases(old_config, verbosity=0)


if __name__ == "__main__":
    main()
