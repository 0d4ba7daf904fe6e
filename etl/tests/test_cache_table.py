"""The throttling cache table exists after `migrate` alone."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings

pytestmark = pytest.mark.django_db(transaction=True)


@override_settings(
    CACHES={"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "django_cache"}}
)
def test_migrate_creates_the_cache_table(migrations_restored):
    with connection.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS django_cache")
    executor = MigrationExecutor(connection)
    executor.migrate([("etl", "0003_integrity_snapshots")])
    assert "django_cache" not in connection.introspection.table_names()
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert "django_cache" in connection.introspection.table_names()
