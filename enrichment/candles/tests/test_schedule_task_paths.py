"""The data migration that moves stored django-q2 task paths along with the task modules."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django_q.models import Schedule

from enrichment.candles.services.schedules import TASK

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("enrichment", "0002_merge_candles_providers")]
AFTER = [("enrichment", "0003_fill_schedule_task_paths")]


def migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


@pytest.fixture(autouse=True)
def _whole_schema_after():
    yield
    # The migrations after AFTER again: the tests that follow on this database need the whole schema
    # (market_data_v2 partitioned among them).
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


def test_stored_task_paths_move_to_the_new_modules_and_back():
    migrate(BEFORE)
    old = {
        "features: BINANCE hourly": "enrichment.tasks_features.features_scheduled",
        "operator's resubmit": "enrichment.tasks_assets.dead_letters_resubmit",
        "someone else's": "etl.tasks.symbols_sync",
    }
    for name, func in old.items():
        Schedule.objects.create(name=name, func=func, schedule_type=Schedule.HOURLY)
    migrate(AFTER)
    # Only the schedules made here: the default ones (e.g. "live: poll") exist beside them.
    moved = dict(Schedule.objects.filter(name__in=old).values_list("name", "func"))
    assert moved == {
        "features: BINANCE hourly": TASK,
        "operator's resubmit": "enrichment.assets.tasks.enrichment_dead_letters_resubmit",
        "someone else's": "etl.tasks.symbols_sync",
    }
    migrate(BEFORE)
    assert dict(Schedule.objects.filter(name__in=old).values_list("name", "func")) == old
    migrate(AFTER)
