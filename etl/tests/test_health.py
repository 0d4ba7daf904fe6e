"""Health that sees the work: one shape on every endpoint, degraded when
nothing is being processed, unhealthy (503) when the database or broker is down."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.signing import SignedPackage
from django_q.status import Stat, Status
from django_q.tasks import async_task

from etl import health
from etl.health import health_report, register_health_check
from etl.models import PipelineRun

pytestmark = pytest.mark.django_db
ENDPOINTS = ("/api/etl/health", "/api/batch-processing/health", "/api/etl/asset-class-correction/health")


@pytest.fixture(autouse=True)
def _fresh_clocks():
    # "Since when" lives in the shared cache; each test starts with none remembered.
    from django.core.cache import cache

    cache.clear()


def queue_a_task() -> None:
    # Nobody runs a cluster in the tests: the task waits, as with the worker stopped.
    async_task("math.floor", 1.5)


def report_a_cluster() -> None:
    """What a running qcluster's sentinel stores every loop (django-q2 keeps it 3 s)."""
    status = Status(pid=4242, cluster_id="test-cluster")
    status.workers = [4243, 4244]
    get_broker().set_stat(Stat.get_key(status.cluster_id), SignedPackage.dumps(status, True), 3)


def test_with_the_worker_stopped_and_a_task_queued_health_degrades_within_the_configured_time(api_anon, settings):
    settings.HEALTH_WORKER_STALE_SECONDS = 1
    queue_a_task()
    first = api_anon.get("/api/etl/health").json()
    assert first["status"] == "healthy" and first["checks"]["workers"]["clusters"] == 0
    time.sleep(1.1)
    response = api_anon.get("/api/etl/health")
    body = response.json()
    assert response.status_code == 200 and body["status"] == "degraded"
    assert body["checks"]["workers"]["ok"] is False and body["checks"]["workers"]["missing_seconds"] >= 1


def test_no_worker_and_an_empty_queue_is_healthy(settings):
    settings.HEALTH_WORKER_STALE_SECONDS = 0
    assert health_report().status == "healthy"


def test_a_reporting_cluster_keeps_health_healthy_and_restarts_the_clock(settings):
    settings.HEALTH_WORKER_STALE_SECONDS = 60
    queue_a_task()
    now = timezone.now()
    assert health_report(now=now).status == "healthy"
    assert health_report(now=now + timedelta(seconds=61)).status == "degraded"
    report_a_cluster()
    report = health_report(now=now + timedelta(seconds=62))
    assert report.status == "healthy"
    assert report.checks["workers"] == {"ok": True, "clusters": 1, "workers": 2, "missing_seconds": 0.0}


def test_the_oldest_queued_task_past_its_age_limit_degrades(settings):
    settings.HEALTH_QUEUE_AGE_SECONDS = 600
    report_a_cluster()
    queue_a_task()
    now = timezone.now()
    assert health_report(now=now).checks["queue_age"]["ok"] is True
    report_a_cluster()
    late = health_report(now=now + timedelta(seconds=601))
    assert late.status == "degraded" and late.checks["queue_age"]["oldest_seconds"] >= 600


def test_a_run_without_progress_for_the_configured_minutes_degrades(settings):
    settings.HEALTH_RUN_STALL_MINUTES = 15
    now = timezone.now()
    moving = PipelineRun.objects.create(status="running", started_at=now, progress_done=10)
    silent = PipelineRun.objects.create(status="running", started_at=now - timedelta(minutes=16))
    first = health_report(now=now)
    assert first.checks["stalled_runs"]["runs"] == {"pipelinerun": [silent.pk]}
    PipelineRun.objects.filter(pk=moving.pk).update(progress_done=20)
    assert health_report(now=now + timedelta(minutes=14)).checks["stalled_runs"]["runs"] == {"pipelinerun": [silent.pk]}
    # No change since the check at +14 min: stalled once 15 minutes have passed from there.
    assert health_report(now=now + timedelta(minutes=28)).checks["stalled_runs"]["runs"] == {"pipelinerun": [silent.pk]}
    stalled = health_report(now=now + timedelta(minutes=29, seconds=1))
    assert stalled.status == "degraded"
    assert sorted(stalled.checks["stalled_runs"]["runs"]["pipelinerun"]) == sorted([moving.pk, silent.pk])
    PipelineRun.objects.filter(pk__in=[moving.pk, silent.pk]).update(status="succeeded")
    assert health_report(now=now + timedelta(minutes=30)).checks["stalled_runs"]["ok"] is True


def test_a_registered_check_that_fails_degrades_every_endpoint(api_anon, monkeypatch):
    monkeypatch.setattr(health, "_CHECKS", {})
    register_health_check("provider_circuits", lambda now: {"ok": False, "open": ["YAHOO_FINANCE"]})
    for path in ENDPOINTS:
        body = api_anon.get(path).json()
        assert body["status"] == "degraded", path
        assert body["checks"]["provider_circuits"] == {"ok": False, "open": ["YAHOO_FINANCE"]}


def test_every_endpoint_answers_the_same_shape(api_anon):
    shared = {"database", "queue", "workers", "queue_age", "stalled_runs"}
    for path in ENDPOINTS:
        response = api_anon.get(path)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "healthy", path
        assert set(body) == {"status", "checks"} and shared <= set(body["checks"]), path
        assert all("ok" in check for check in body["checks"].values()), path
    assert api_anon.get("/api/batch-processing/health").json()["checks"]["imports"]["ok"] is True


def test_every_endpoint_is_503_when_the_broker_is_down(api_anon, monkeypatch):
    # The outside world: a Redis broker nobody listens on.
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "BROKER_CLASS", None)  # as settings has it with Redis
    monkeypatch.setattr(Conf, "REDIS", "redis://127.0.0.1:9/0")
    for path in ENDPOINTS:
        response = api_anon.get(path)
        assert response.status_code == 503, path
        assert response.json()["status"] == "unhealthy" and response.json()["checks"]["queue"]["ok"] is False


def test_every_endpoint_is_503_when_the_database_is_down(api_anon, monkeypatch):
    # The database's answer is what the check reads; stand in for a server that refuses.
    monkeypatch.setattr(health, "_database", lambda: {"ok": False, "error": "connection refused"})
    for path in ENDPOINTS:
        response = api_anon.get(path)
        assert response.status_code == 503 and response.json()["status"] == "unhealthy", path
