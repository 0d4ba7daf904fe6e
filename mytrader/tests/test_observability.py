"""Every metric the alerting rules read is exported at /metrics, from the
shared tables, so any web process answers for work done by any worker."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from batchimport.models import ImportJob
from conftest import child_database_url
from enrichment.providers.models import FetchLog
from etl import services
from etl.models import AssetClass, Market, MarketData, PipelineRun, Symbol
from etl.services import retention_prune
from etl.tests.test_metrics import scrape

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "prometheus" / "alerts.yml"


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


def counters(client) -> dict[tuple[str, str], float]:
    got = scrape(client)
    return {
        key: value
        for key, value in {**got.get("counter", {}), **got.get("histogram", {})}.items()
        if not key[0].endswith("_created")
    }


def test_no_exported_counter_decreases_when_runs_change_state_are_retried_and_pruned(client, reference_data):
    seen = [counters(client)]

    def step():
        now_ = counters(client)
        before = seen[-1]
        dropped = {k: (v, now_.get(k)) for k, v in before.items() if now_.get(k, -1) < v}
        assert not dropped, f"counters went down or vanished: {dropped}"
        seen.append(now_)
        return now_

    now = timezone.now()
    run = PipelineRun.objects.create(status="queued")
    step()
    PipelineRun.objects.filter(pk=run.pk).update(status="running", started_at=now - timedelta(seconds=30))
    step()
    PipelineRun.objects.filter(pk=run.pk).update(status="failed", finished_at=now)
    failed = step()[("mytrader_runs_total", '{kind="pipelinerun",status="failed"}')]
    # A retry turns the failed run back into a running one, then it succeeds.
    PipelineRun.objects.filter(pk=run.pk).update(status="running", finished_at=None)
    assert step()[("mytrader_runs_total", '{kind="pipelinerun",status="failed"}')] == failed
    PipelineRun.objects.filter(pk=run.pk).update(status="succeeded", finished_at=now + timedelta(seconds=5))
    after = step()
    assert after[("mytrader_runs_total", '{kind="pipelinerun",status="succeeded"}')] == 1
    assert after[("mytrader_run_duration_seconds_count", '{kind="pipelinerun"}')] == 2

    job = ImportJob.objects.create(kind="market", market="BIST", path="/data/bist", status="running", started_at=now)
    ImportJob.objects.filter(pk=job.pk).update(sla_breached=True, status="failed", finished_at=now)
    step()
    ImportJob.objects.filter(pk=job.pk).update(sla_breached=False, status="running")  # an operator's retry
    assert step()[("mytrader_import_sla_breaches_total", '{market="BIST"}')] == 1
    ImportJob.objects.filter(pk=job.pk).update(sla_breached=True, status="succeeded")
    final = step()
    assert final[("mytrader_import_sla_breaches_total", '{market="BIST"}')] == 2
    assert final[("mytrader_import_jobs_started_total", '{market="BIST"}')] == 2

    FetchLog.objects.bulk_create(
        [FetchLog(provider="YAHOO_FINANCE", endpoint="chart", duration_ms=1, attempt=1, outcome="ok")] * 3
    )
    final = step()
    assert final[("mytrader_provider_requests_total", '{outcome="ok",provider="YAHOO_FINANCE"}')] == 3

    retention_prune(days=0)
    step()
    # Even the rows the events came from going away leaves the counts alone.
    PipelineRun.objects.all().delete()
    ImportJob.objects.all().delete()
    FetchLog.objects.all().delete()
    assert step() == final | seen[-1]


def test_the_gauges_of_runs_imports_and_quality(client, reference_data):
    now = timezone.now()
    PipelineRun.objects.create(status="running", started_at=now - timedelta(seconds=7300))
    PipelineRun.objects.create(status="running", started_at=now - timedelta(seconds=60))
    ImportJob.objects.create(
        kind="market",
        market="NYSE",
        path="/d",
        status="running",
        started_at=now - timedelta(seconds=100),
        rows_read=1000,
    )
    ImportJob.objects.create(
        kind="market",
        market="NYSE",
        path="/e",
        status="running",
        started_at=now - timedelta(seconds=100),
        rows_read=5000,
    )
    # The quality gauges read the integrity summaries as they are now: 19 of BIST's 20 candles
    # and 3 of NASDAQ's 5 agree with their symbol's class (88 % overall).
    for ticker, market, code, right, wrong in (
        ("THYAO", "BIST", "STOCK_BIST", 19, 1),
        ("AAPL", "NASDAQ", "STOCK_NASDAQ", 3, 2),
    ):
        symbol = Symbol.objects.create(
            ticker=ticker, market=Market.objects.get(code=market), asset_class=AssetClass.objects.get(code=code)
        )
        MarketData.objects.bulk_create(
            MarketData(
                ticker=ticker,
                market=market,
                timeframe="1d",
                ts=now - timedelta(days=i),
                open=1,
                high=1,
                low=1,
                close=1,
                volume=1,
                symbol=symbol,
                asset_class=code if i < right else market,
            )
            for i in range(right + wrong)
        )
    gauges = scrape(client)["gauge"]
    assert 7300 <= gauges[("mytrader_run_oldest_running_seconds", '{kind="pipelinerun"}')] < 7400
    assert gauges[("mytrader_run_oldest_running_seconds", '{kind="correctionrun"}')] == 0
    assert 9.5 < gauges[("mytrader_import_rows_per_second", '{market="NYSE"}')] <= 10.0  # the slower job
    assert gauges[("mytrader_asset_class_quality_score", "")] == 88.0
    assert gauges[("mytrader_asset_class_quality_score", '{market="BIST"}')] == 95.0
    assert gauges[("mytrader_data_quality_score", "")] == 66  # 0.4 x 100 coverage + 0.3 x 88 + 0.3 x 0 enriched
    assert gauges[("mytrader_queue_workers", "")] == 0


def families(body: str) -> set[str]:
    return {line.split()[2] for line in body.splitlines() if line.startswith("# TYPE ")}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (our own server on 127.0.0.1)
        return response.read().decode()


@pytest.fixture
def served_env(tmp_path) -> dict[str, str]:
    """What a web or worker process of this deployment gets: the test database (on a real server or
    the embedded one's socket folder), one multiprocess folder."""
    url = child_database_url()
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    return {**os.environ, "DATABASE_URL": url, "DEBUG": "on", "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_gunicorn_workers_with_multiproc_dir_serve_every_family_and_the_workers_counts(client, served_env):
    services.reference_data_bootstrap()
    PipelineRun.objects.create(status="failed", started_at=timezone.now(), finished_at=timezone.now())
    expected = {name for name in families(client.get("/metrics").content.decode()) if name.startswith("mytrader_")}
    # Work counted in another process (a django-q2 worker would do the same).
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from corrections import metrics; metrics.operations_started.labels('analyze').inc(5)",
        ],
        cwd=ROOT,
        env=served_env,
        check=True,
        timeout=120,
        capture_output=True,
    )
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "mytrader.wsgi:application",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=served_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                fetch(f"http://127.0.0.1:{port}/api/etl/health")
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.3)
        bodies = [fetch(f"http://127.0.0.1:{port}/metrics") for _ in range(8)]
    finally:
        server.terminate()
        server.wait(timeout=30)
    for body in bodies:
        missing = expected - families(body)
        assert not missing, f"a worker's /metrics lacks {sorted(missing)}"
        assert 'assetclass_operations_started_total{operation="analyze"} 5.0' in body
        assert 'mytrader_runs_total{kind="pipelinerun",status="failed"} 1.0' in body
        assert "django_http_requests_total_by_method_total" in body  # the multiprocess families too


@pytest.mark.slow
def test_scrape_cost_stays_bounded_at_a_million_fetch_log_rows_and_100k_runs(client, reference_data):
    from etl.metrics import registered_collectors

    def scrape_seconds() -> dict[str, float]:
        """Each collector's median of three scrapes."""
        timings: dict[str, list[float]] = {}
        for _ in range(3):
            for name, collector in registered_collectors().items():
                started = time.perf_counter()
                list(collector.collect())
                timings.setdefault(name, []).append(time.perf_counter() - started)
        return {name: sorted(seconds)[1] for name, seconds in timings.items()}

    # The reference: the same scrape over an empty database, in the same test, so that a loaded
    # machine (parallel workers, other jobs) slows both alike.
    client.get("/metrics")
    empty = scrape_seconds()
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pipeline_runs (status, requested_by, created_at, started_at, finished_at, progress_done,"
            " cancel_requested, error, trigger, steps_requested, options, continue_on_failure, summary)"
            " SELECT 'succeeded', '', now(), now() - interval '1 minute', now(), 0, false, '', 'schedule',"
            " '[]', '{}', false, '{}' FROM generate_series(1, 100000)"
        )
        cur.execute(
            "INSERT INTO enrichment_fetch_log (provider, endpoint, symbol, duration_ms, attempt, bytes, outcome,"
            " error, created_at) SELECT 'YAHOO_FINANCE', 'chart', 'S' || (g % 1000), 12.5, 1, 100,"
            " CASE WHEN g % 10 = 0 THEN 'timeout' ELSE 'ok' END, '', now() FROM generate_series(1, 1000000) g"
        )
        cur.execute("ANALYZE pipeline_runs; ANALYZE enrichment_fetch_log")
    client.get("/metrics")  # folds the 100k runs' events once
    timings = scrape_seconds()
    print("scrape seconds, empty / full:", {k: (round(empty[k], 4), round(v, 4)) for k, v in timings.items()})
    body = client.get("/metrics").content.decode()
    assert 'mytrader_runs_total{kind="pipelinerun",status="succeeded"} 100000.0' in body
    # Bounded: no collector reads the million rows. Quiet, the events collector takes 0.07-0.15 s
    # empty and 0.28 s full (it folds and formats the per-symbol fetch counters); a scan of the
    # fetch log or of the runs on every scrape takes seconds. The bound scales with the empty
    # scrape, so a loaded machine slows both alike.
    ours = {k: (empty[k], v) for k, v in timings.items() if not k.startswith("enrichment.")}
    assert all(full < max(0.5, 5 * before) for before, full in ours.values()), ours
