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
