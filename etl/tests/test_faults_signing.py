"""A web and a worker with different SECRET_KEYs: django-q2 would drop every task
the web queues. The worker refuses to start, and health on the web says why."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django_q.conf import Conf

from conftest import child_database_url
from etl import queue
from etl.health import DEGRADED, health_report
from etl.models import SigningProbe

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh_process(monkeypatch):
    monkeypatch.setattr(queue, "_web_probe_written", False)


@pytest.fixture
def web_probe(api_client_for):
    """The web serves a request: it writes its probe with its key."""
    api_client_for().get("/api/etl/health")
    return SigningProbe.objects.get(name=queue.WEB_PROBE)


@pytest.mark.django_db
def test_the_web_writes_its_probe_on_its_first_request_only(web_probe, api_client_for):
    assert queue.signing_probe_readable(web_probe)
    written = web_probe.written_at
    api_client_for().get("/api/etl/health")
    assert SigningProbe.objects.get(name=queue.WEB_PROBE).written_at == written


@pytest.mark.django_db
def test_a_worker_with_the_web_key_passes_and_health_stays_healthy(web_probe):
    check = queue.worker_key_check()
    assert check.ok and "reads the tasks" in check.reason
    report = health_report()
    assert report.checks["signing_key"] == {"ok": True}


@pytest.mark.django_db
def test_a_worker_with_another_key_refuses_to_start_and_health_says_why(web_probe, monkeypatch, caplog):
    monkeypatch.setattr(Conf, "SECRET_KEY", "the worker's other key")
    with caplog.at_level(logging.ERROR, logger="etl.queue"), pytest.raises(CommandError, match="refuses to start"):
        call_command("qcluster")
    assert "SECRET_KEY differs from the web's" in caplog.text
    monkeypatch.undo()  # back in the web, with its own key

    report = health_report()
    assert report.status == DEGRADED
    check = report.checks["signing_key"]
    assert check["ok"] is False and "another SECRET_KEY" in check["reason"]
    assert check["workers"] == [queue.worker_probe_name().split(":", 1)[1]]


@pytest.mark.django_db
def test_health_recovers_once_the_worker_restarts_with_the_right_key(web_probe, monkeypatch):
    monkeypatch.setattr(Conf, "SECRET_KEY", "the worker's other key")
    assert not queue.worker_key_check().ok
    monkeypatch.undo()
    assert queue.worker_key_check().ok
    assert health_report().checks["signing_key"] == {"ok": True}


@pytest.mark.django_db
def test_before_the_web_served_anything_the_worker_starts_unchecked():
    check = queue.worker_key_check()
    assert check.ok and "not checked" in check.reason


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_qcluster_with_another_key_exits_at_once_with_the_reason(web_probe, tmp_path):
    env = {**os.environ, "DATABASE_URL": child_database_url(), "DEBUG": "on", "SECRET_KEY": "another key"}
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "manage.py", "qcluster"], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "worker refuses to start" in output and "SECRET_KEY differs from the web's" in output
    assert "Q Cluster" not in output  # no cluster was started
