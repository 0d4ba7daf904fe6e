"""The advisory-lock registry: one namespace per lock, and the only place that names
PostgreSQL's advisory-lock functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl import locks

ROOT = Path(__file__).resolve().parents[2]
SKIPPED_DIRS = {"tests", "migrations", ".venv", "var", "node_modules"}


def test_every_lock_has_its_own_namespace_and_name():
    namespaces = [lock.namespace for lock in locks.LOCKS]
    names = [lock.name for lock in locks.LOCKS]
    assert len(set(namespaces)) == len(namespaces), sorted(namespaces)
    assert len(set(names)) == len(names), sorted(names)
    declared = {value for value in vars(locks).values() if isinstance(value, locks.AdvisoryLock)}
    assert declared == set(locks.LOCKS), "every AdvisoryLock in etl.locks is listed in LOCKS"


def test_no_module_but_the_registry_calls_advisory_lock_functions():
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if SKIPPED_DIRS & set(relative.parts[:-1]) or relative == Path("etl/locks.py"):
            continue
        text = path.read_text()
        if "pg_advisory" in text or "pg_try_advisory" in text:
            offenders.append(str(relative))
    assert not offenders, "take advisory locks from etl.locks:\n" + "\n".join(offenders)


def test_item_keys_fit_postgres_int4():
    for item in (0, 7, -(2**31), 2**31 - 1, 2**40, "BINANCE"):
        namespace, key = locks.PIPELINE.key(item)
        assert namespace == locks.PIPELINE.namespace
        assert -(2**31) <= key < 2**31
    assert locks.PROVIDER_RATE.key("YAHOO_FINANCE") == locks.PROVIDER_RATE.key("YAHOO_FINANCE")


@pytest.mark.django_db
def test_a_held_session_lock_is_seen_in_pg_locks_by_its_namespace():
    assert not locks.is_held(locks.CORRECTION)
    with locks.session_lock(locks.CORRECTION) as acquired:
        assert acquired
        assert locks.is_held(locks.CORRECTION)
        assert not locks.is_held(locks.PIPELINE)
    assert not locks.is_held(locks.CORRECTION)


@pytest.mark.django_db(transaction=True)
def test_a_lock_held_in_another_database_does_not_count():
    import psycopg
    from django.db import connection

    params = connection.get_connection_params()
    other = {k: v for k, v in params.items() if k in ("host", "port", "user", "password")}
    with psycopg.connect(dbname="postgres", autocommit=True, **other) as elsewhere:
        elsewhere.execute("SELECT pg_advisory_lock(%s, %s)", locks.CORRECTION.key())
        assert not locks.is_held(locks.CORRECTION)


@pytest.mark.django_db(transaction=True)
def test_a_group_of_session_locks_is_taken_and_released_in_one_statement_each():
    import psycopg
    from django.db import connection

    params = connection.get_connection_params()
    other = {k: v for k, v in params.items() if k in ("host", "port", "user", "password", "dbname")}
    items = [5, 2**40, 7]  # an id past int4 too (its key is a CRC)
    with psycopg.connect(autocommit=True, **other) as elsewhere:
        elsewhere.execute("SELECT pg_advisory_lock(%s, %s)", locks.IMPORT_FILE.key(7))  # another worker reads 7
        assert locks.try_session_locks(locks.IMPORT_FILE, items) == [5, 2**40]
        assert locks.held_items(locks.IMPORT_FILE, [*items, 9]) == {5, 2**40, 7}
        locks.session_unlock_many(locks.IMPORT_FILE, [5, 2**40])
        assert locks.held_items(locks.IMPORT_FILE, items) == {7}


@pytest.mark.django_db
def test_a_group_of_transaction_locks_is_taken_in_one_statement():
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    items = ["3:1d", "1:1d", "2:15m", "1:1d"]
    with transaction.atomic():
        with CaptureQueriesContext(connection) as queries:
            locks.xact_locks(locks.FEATURE_SERIES, items)
        assert len(queries.captured_queries) == 1
        assert all(locks.is_held(locks.FEATURE_SERIES, item) for item in items)
    locks.xact_locks(locks.FEATURE_SERIES, [])  # nothing to take: no statement
