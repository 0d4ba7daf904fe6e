"""Every metric the alerting rules read is exported at /metrics, from the
shared tables, so any web process answers for work done by any worker."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.utils import timezone

from etl import services

pytestmark = pytest.mark.django_db
RULES = Path(__file__).resolve().parents[2] / "ops" / "prometheus" / "alerts.yml"


def test_every_metric_the_alerts_use_is_exported(client):
    from etl.services import integrity_snapshot_take

    services.reference_data_bootstrap()
    integrity_snapshot_take()
    body = client.get("/metrics").content.decode()
    used = set(re.findall(r"\b(mytrader_[a-z_]+)", RULES.read_text()))
    assert used, "the rules name no metric?"
    types = dict(line.split()[2:4] for line in body.splitlines() if line.startswith("# TYPE "))
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}
    exported = set(types) | {name + suffix for name, typ in types.items() for suffix in suffixes.get(typ, ())}
    missing = sorted(used - exported)
    assert not missing, f"alert rules read metrics nobody exports: {missing}"


def test_run_metrics_count_runs_of_every_kind_by_status(client):
    from django.apps import apps

    from etl.models import RunRecord

    model = next(m for m in apps.get_models() if issubclass(m, RunRecord) and m._meta.model_name == "pipelinerun")
    now = timezone.now()
    model.objects.create(status="failed", started_at=now - timezone.timedelta(seconds=30), finished_at=now)
    model.objects.create(status="succeeded", started_at=now - timezone.timedelta(seconds=3), finished_at=now)
    body = client.get("/metrics").content.decode()
    assert 'mytrader_runs_total{kind="pipelinerun",status="failed"} 1.0' in body
    assert 'mytrader_run_duration_seconds_bucket{kind="pipelinerun",le="5.0"} 1.0' in body
    assert 'mytrader_run_duration_seconds_count{kind="pipelinerun"} 2.0' in body


def test_log_lines_carry_the_run_they_belong_to():
    import json
    import logging

    from pythonjsonlogger.json import JsonFormatter

    from etl.logcontext import RunContextFilter, run_context

    record = logging.LogRecord("etl.pipeline", logging.INFO, __file__, 1, "step done", None, None)
    with run_context("pipeline", 42):
        RunContextFilter().filter(record)
    line = JsonFormatter("%(levelname)s %(name)s %(message)s %(run_type)s %(run_id)s").format(record)
    assert (
        json.loads(line).items()
        >= {
            "levelname": "INFO",
            "name": "etl.pipeline",
            "message": "step done",
            "run_type": "pipeline",
            "run_id": "42",
        }.items()
    )
