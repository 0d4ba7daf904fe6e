from __future__ import annotations

from datetime import timedelta

import pytest
from django.apps import apps
from django.utils import timezone

from etl import dashboard, services
from etl.models import MarketData, RunRecord
from etl.services import integrity_snapshot_take

pytestmark = pytest.mark.django_db


def test_dashboard_shows_every_registered_panel(admin_client):
    services.reference_data_bootstrap()
    page = admin_client.get("/admin/").content.decode()
    for panel in dashboard.registered_panels():
        assert f'id="panel-{panel.name}"' in page, panel.name
    assert "Nothing is running." in page
    assert "BINANCE" in page  # the providers panel lists the reference providers


def test_every_number_links_to_the_list_behind_it(admin_client):
    page = admin_client.get("/admin/").content.decode()
    assert 'href="/admin/django_q/failure/"' in page
    assert 'href="/admin/django_q/ormq/"' in page
    assert "status__exact=failed" in page


def test_a_broken_panel_shows_its_error_and_the_page_still_renders(admin_client, monkeypatch):
    def broken(request):
        raise RuntimeError("selector exploded")

    monkeypatch.setitem(
        dashboard._PANELS,
        "broken",
        dashboard.Panel(name="broken", title="Broken", order=1, template="admin/dashboard/runs.html", context=broken),
    )
    response = admin_client.get("/admin/")
    assert response.status_code == 200
    assert "This panel could not be drawn: selector exploded" in response.content.decode()


def test_running_work_shows_progress(admin_client):

    # Any run model will do; etl does not know the other apps by name.
    model = next(m for m in apps.get_models() if issubclass(m, RunRecord))
    run = model.objects.create(status="running", progress_done=250, progress_total=1000, rate_per_second=50)
    page = admin_client.get("/admin/").content.decode()
    assert f"#{run.pk}" in page
    assert "25.0 %" in page


def test_integrity_panel_draws_the_trend_from_snapshots(admin_client):

    services.reference_data_bootstrap()
    MarketData.objects.create(
        ticker="AAPL", market="NASDAQ", timeframe="1d", ts=timezone.now(), open=1, high=2, low=1, close=2, volume=5
    )
    integrity_snapshot_take(at=timezone.now() - timedelta(hours=2))
    integrity_snapshot_take()
    page = admin_client.get("/admin/").content.decode()
    assert 'data-figure="integrity-figure"' in page
    assert 'id="integrity-figure"' in page
    assert "candles without symbol" in page
    assert "symbol__isnull=True" in page  # the number links to the candles behind it


def _runs_counted_by_the_table(model, since) -> dict[str, int]:
    runs = model.objects.filter(created_at__gte=since)
    return {"created": runs.count(), "failed": runs.filter(status="failed").count()}


def test_the_runs_panel_counts_the_last_day_from_the_summaries_not_the_run_tables(admin_client, assert_summaries_exact):
    """An hourly run at 100,000 symbols creates 100,000 import-file runs an hour: the panel's
    count of the run tables over 24 h grew with them (28 ms at 100,000, seconds at 2.4 M). It
    reads the hour buckets the run tables' triggers keep, which equal a count of the table."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from etl.dashboard_panels import runs_context
    from etl.events import run_kind
    from etl.models import PipelineRun
    from etl.summaries import runs_last_day

    now = timezone.now()
    PipelineRun.objects.bulk_create(  # one statement, as a job creates its file runs
        [PipelineRun(status="queued") for _ in range(40)]
        + [PipelineRun(status="failed", finished_at=now) for _ in range(3)]
        + [PipelineRun(status="failed") for _ in range(2)]
    )
    old = PipelineRun.objects.create(status="failed")
    PipelineRun.objects.filter(pk=old.pk).update(created_at=now - timedelta(hours=30))  # out of the window
    queued = list(PipelineRun.objects.filter(status="queued").values_list("pk", flat=True))
    PipelineRun.objects.filter(pk__in=queued[:5]).update(status="running")  # progress, not counted again
    PipelineRun.objects.filter(pk__in=queued[5:9]).update(status="failed", finished_at=now)
    PipelineRun.objects.filter(pk__in=queued[9:10]).update(status="succeeded")
    PipelineRun.objects.filter(pk__in=queued[10:12]).delete()  # an admin's delete, a retention prune
    PipelineRun.objects.filter(status="failed", finished_at__isnull=True).exclude(pk=old.pk).update(status="queued")
    assert_summaries_exact(sources=["runs"])

    since, counted = runs_last_day()
    assert since <= now - timedelta(hours=24) and since > now - timedelta(hours=25)
    expected = {"created": 43, "failed": 7}
    assert counted[run_kind(PipelineRun)] == _runs_counted_by_the_table(PipelineRun, since) == expected
    with CaptureQueriesContext(connection) as queries:
        context = runs_context(None)
    counts = [q["sql"] for q in queries.captured_queries if "count(" in q["sql"].lower()]
    assert counts == []  # no run table is counted
    pipeline = next(k for k in context["kinds"] if k["kind"] == PipelineRun._meta.verbose_name_plural)
    assert (pipeline["total"], pipeline["failed"]) == (43, 7)
    page = admin_client.get("/admin/").content.decode()
    assert f"since {timezone.localtime(since):%Y-%m-%d %H:%M}" in page
