"""The queue broker on a lost database connection: no error loop. It closes the
dead connection, waits with backoff, says so once and says when it is back."""

from __future__ import annotations

import logging

import pytest
from django.db import OperationalError
from django_q.brokers import get_broker
from django_q.brokers.orm import ORM

from etl import queue
from etl.queue import ReconnectingORM

pytestmark = pytest.mark.django_db


def test_the_cluster_uses_the_reconnecting_broker_without_redis(settings):
    assert settings.Q_CLUSTER.get("broker_class") == "etl.queue.ReconnectingORM"
    assert isinstance(get_broker(), ReconnectingORM)


def test_a_lost_connection_is_logged_once_retried_with_backoff_and_its_return_logged(monkeypatch, caplog):
    clock = [100.0]
    monkeypatch.setattr(queue.time, "monotonic", lambda: clock[0])
    calls: list[str] = []
    down = [True]

    def set_stat(self, key, value, timeout):
        calls.append(key)
        if down[0]:
            raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(ORM, "set_stat", set_stat)
    broker = ReconnectingORM()
    with caplog.at_level(logging.INFO, logger="etl.queue"):
        for _ in range(20):  # the sentinel's half-second status write, 10 s of a restart
            broker.set_stat("stat", "x", 3)
            clock[0] += 0.5
        down[0] = False
        clock[0] += 10
        broker.set_stat("stat", "x", 3)
        broker.set_stat("stat", "x", 3)
    assert len(calls) < 10  # backoff: 0.5, 1, 2, 4, 8 s between tries, not every call
    lines = [r.getMessage() for r in caplog.records if r.name == "etl.queue"]
    assert [line.split(" (")[0] for line in lines] == [
        "queue: database connection lost",
        "queue: database connection back",
    ]
    assert len(calls) == calls.count("stat")
