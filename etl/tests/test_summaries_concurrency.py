"""Concurrent writers and the integrity summaries: nobody waits on a summary row, a
change of a symbol's class never races a writer counting under the old class, and
after any mix of concurrent writes the summaries equal a recount."""

from __future__ import annotations

import random
import threading
import time

import psycopg
import pytest
from django.db import connection

from etl import locks, selectors
from etl.models import AssetClass, Market, Symbol
from etl.summaries import summaries_fold

pytestmark = pytest.mark.django_db(transaction=True)

INSERT = (
    "INSERT INTO market_data (ticker, market, timeframe, ts, open, high, low, close, volume, asset_class, symbol_id)"
    " SELECT %s, %s, '1h', timestamptz '2024-01-01 00:00+00' + (%s + g) * interval '1 hour', 1, 1, 1, 1, 1, %s, %s"
    " FROM generate_series(0, %s - 1) g ON CONFLICT DO NOTHING"
)


def session() -> psycopg.Connection:
    params = connection.get_connection_params()
    keys = ("host", "port", "user", "password", "dbname")
    return psycopg.connect(**{k: v for k, v in params.items() if k in keys})


def waiting_for_advisory_lock() -> int:
    namespace = locks.SUMMARY_SYMBOLS.namespace
    with connection.cursor() as cur:
        # This database's waiters only: a parallel worker's (another test database) would count too.
        cur.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = %s"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            [namespace],
        )
        return cur.fetchone()[0]


def test_a_waiter_in_another_database_is_not_counted():
    # Parallel workers (pytest-xdist) each have a test database on the same server: a test of one
    # must not see the other's writers queueing on the same advisory lock.
    params = {k: v for k, v in connection.get_connection_params().items() if k in ("host", "port", "user", "password")}
    namespace = locks.SUMMARY_SYMBOLS.namespace
    holder = psycopg.connect(dbname="postgres", autocommit=True, **params)
    waiter = psycopg.connect(dbname="postgres", autocommit=True, **params)
    holder.execute("SELECT pg_advisory_lock(%s, 1)", [namespace])
    thread = threading.Thread(target=waiter.execute, args=("SELECT pg_advisory_lock(%s, 1)", [namespace]))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND pid = %s"
        while holder.execute(query, [waiter.info.backend_pid]).fetchone()[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        seen = waiting_for_advisory_lock()
    finally:
        holder.close()  # its lock goes with it: the waiter gets it and returns
        thread.join(timeout=30)
        waiter.close()
    assert seen == 0


@pytest.fixture
def btc(reference_data) -> Symbol:
    return Symbol.objects.create(
        ticker="BTCUSDT", market=Market.objects.get(code="BINANCE"), asset_class=AssetClass.objects.get(code="CRYPTO")
    )


def test_writers_of_one_market_do_not_wait_for_each_other(btc, assert_summaries_exact):
    with session() as a, session() as b:
        a.execute(INSERT, ["BTCUSDT", "BINANCE", 0, "CRYPTO", btc.pk, 100])
        a.execute(INSERT, ["NEW1", "BINANCE", 0, None, None, 50])
        # b writes the same market, the same symbol and its own unlinked pair while a is open:
        # with a counter row per market it would wait here for a's commit.
        b.execute("SET lock_timeout = '2s'")
        started = time.monotonic()
        b.execute(INSERT, ["BTCUSDT", "BINANCE", 1000, "CRYPTO", btc.pk, 100])
        b.execute(INSERT, ["NEW2", "BINANCE", 0, None, None, 50])
        b.commit()
        assert time.monotonic() - started < 1.0
        a.commit()
    assert_summaries_exact()
    overall = selectors.integrity_status()["overall"]
    assert (overall["candles"], overall["candles_without_symbol"]) == (300, 100)
    assert selectors.symbol_sync_status()["unsynced_pairs"] == 2


@pytest.mark.parametrize("first", ["writer", "class_change"])
def test_a_class_change_and_a_writer_of_its_candles_serialise(btc, assert_summaries_exact, first):
    """Whichever starts first, the candles end up counted under the class the symbol has."""
    etf = AssetClass.objects.get(code="ETF")
    with session() as writer, session() as changer:
        errors: list[BaseException] = []

        def second(conn: psycopg.Connection, sql: str, params: list) -> threading.Thread:
            def work():
                try:
                    conn.execute(sql, params)
                    conn.commit()
                except BaseException as exc:  # reported by the test, not lost in the thread
                    errors.append(exc)

            thread = threading.Thread(target=work)
            thread.start()
            return thread

        change = ("UPDATE symbols SET asset_class_id = %s WHERE id = %s", [etf.pk, btc.pk])
        write = (INSERT, ["BTCUSDT", "BINANCE", 0, "CRYPTO", btc.pk, 40])
        if first == "writer":
            writer.execute(*write)
            thread = second(changer, *change)
            opener = writer
        else:
            changer.execute(*change)
            thread = second(writer, *write)
            opener = changer
        deadline = time.monotonic() + 5
        while waiting_for_advisory_lock() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert waiting_for_advisory_lock() == 1  # the second one waits for the first to commit
        opener.commit()
        thread.join(10)
        assert not errors
    assert_summaries_exact()
    assert selectors.integrity_status()["overall"]["asset_class_consistency"] == 0.0  # CRYPTO candles, ETF symbol


def test_a_mix_of_concurrent_writers_leaves_the_summaries_exact(reference_data, assert_summaries_exact):
    binance = Market.objects.get(code="BINANCE")
    classes = list(AssetClass.objects.filter(code__in=["CRYPTO", "ETF", "STOCK"]))
    symbols = [Symbol.objects.create(ticker=f"S{i}", market=binance, asset_class=classes[0]) for i in range(6)]
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with session() as conn:
                for step in range(25):
                    symbol = rng.choice(symbols)
                    choice = rng.random()
                    if choice < 0.5:
                        linked = rng.random() < 0.7
                        conn.execute(
                            INSERT,
                            [
                                symbol.ticker,
                                "BINANCE",
                                rng.randrange(200),
                                rng.choice(["CRYPTO", "ETF", None, ""]),
                                symbol.pk if linked else None,
                                rng.randrange(1, 20),
                            ],
                        )
                    elif choice < 0.7:
                        conn.execute(
                            "UPDATE market_data SET asset_class = %s WHERE ticker = %s AND ts < %s::timestamptz",
                            [rng.choice(["CRYPTO", "ETF", None]), symbol.ticker, f"2024-01-0{rng.randrange(1, 9)}"],
                        )
                    elif choice < 0.8:
                        conn.execute(
                            "DELETE FROM market_data WHERE ticker = %s AND ts > %s::timestamptz",
                            [symbol.ticker, f"2024-01-0{rng.randrange(2, 9)}"],
                        )
                    elif choice < 0.9:
                        conn.execute(
                            "UPDATE symbols SET asset_class_id = %s WHERE id = %s", [rng.choice(classes).pk, symbol.pk]
                        )
                    else:
                        conn.execute(
                            "UPDATE market_data SET symbol_id = %s WHERE ticker = %s AND symbol_id IS NULL",
                            [symbol.pk, symbol.ticker],
                        )
                    if step % 3 == 2:
                        conn.commit()
                conn.commit()
        except psycopg.errors.DeadlockDetected:
            pass  # two writers of the same candles in opposite orders: PostgreSQL undoes one, as without summaries
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    threads.append(threading.Thread(target=_fold_loop))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert_summaries_exact()


def _fold_loop() -> None:
    """Folds while the writers write (in its own connection, as the schedule would)."""
    try:
        for _ in range(30):
            summaries_fold()
            time.sleep(0.01)
    finally:
        connection.close()
