"""Enrichment coverage as the old guide counts it (per market and per field, on the API and
the dashboard) and the weekly stale-refresh schedule."""

from __future__ import annotations

import ast
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from enrichment.assets import tasks
from enrichment.assets.selectors import enrichment_coverage
from enrichment.assets.services.refresh_schedule import REFRESH_SCHEDULE, refresh_schedule_ensure
from etl.models import AssetClass, Market, Symbol
from etl.selectors import integrity_status

pytestmark = pytest.mark.django_db


def make_symbol(ticker: str, market: str, asset_class: str, **fields) -> Symbol:
    return Symbol.objects.create(
        ticker=ticker,
        market=Market.objects.get(code=market),
        asset_class=AssetClass.objects.get(code=asset_class),
        **fields,
    )


@pytest.fixture
def catalogue_of_four(reference_data):
    now = timezone.now()
    make_symbol("AAPL", "NASDAQ", "STOCK_NASDAQ", name="Apple Inc.", sector="Technology", enriched_at=now)
    make_symbol("CALM", "NASDAQ", "STOCK_NASDAQ", name="Cal-Maine", sector="Consumer Defensive")  # partial
    make_symbol("ZZZQ", "NASDAQ", "STOCK_NASDAQ")  # nothing known
    make_symbol("THYAO", "BIST", "STOCK_BIST", country="TR", quote_currency="TRY")
    make_symbol("OLD", "BIST", "STOCK_BIST", name="Gone", is_active=False)  # not a target


def test_coverage_counts_enriched_and_partially_enriched_over_active_symbols(catalogue_of_four):
    coverage = enrichment_coverage()
    assert (coverage["targets"], coverage["enriched"], coverage["partial"]) == (4, 1, 1)
    assert coverage["coverage_percent"] == 50.0 and coverage["goal_percent"] == 80.0
    markets = {m["market"]: m for m in coverage["markets"]}
    nasdaq, bist = markets["NASDAQ"], markets["BIST"]
    assert nasdaq["coverage_percent"] == 66.7 and bist["coverage_percent"] == 0.0
    assert nasdaq["fields"]["name"] == {"filled": 2, "percent": 66.7, "expected": True}
    assert bist["fields"]["country"]["percent"] == 100.0
    # What is missing where: every expected stock field BIST lacks, but not its country or currency.
    assert bist["missing"] == ["name", "sector", "industry", "market_cap", "description", "website"]
    assert coverage["fields"]["sector"] == 50.0


def test_coverage_is_on_the_status_endpoint_and_the_dashboard(catalogue_of_four, api_client_for, admin_client):
    body = api_client_for().get(reverse("etl-enrichment-status")).json()
    assert body["coverage"]["coverage_percent"] == 50.0
    assert [m["market"] for m in body["coverage"]["markets"]] == ["BIST", "NASDAQ"]
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert 'id="panel-enrichment_coverage"' in page
    assert "Enriched + partially enriched: 50.0 %" in page
    assert "name, sector, industry, market cap, description, website" in page  # BIST's missing fields (their labels)


def test_the_weekly_refresh_schedule_is_created_once_and_keeps_operator_edits(reference_data):
    Schedule.objects.filter(name=REFRESH_SCHEDULE).delete()  # in case the step or post_migrate made it
    assert refresh_schedule_ensure() is True
    schedule = Schedule.objects.get(name=REFRESH_SCHEDULE)
    assert (schedule.cron, schedule.func) == ("0 2 * * 0", "enrichment.assets.tasks.assets_refresh_stale")
    Schedule.objects.filter(pk=schedule.pk).update(cron="30 4 * * 6")
    assert refresh_schedule_ensure() is False
    call_command("migrate", verbosity=0)  # post_migrate ensures it again
    assert Schedule.objects.filter(name=REFRESH_SCHEDULE).count() == 1
    assert Schedule.objects.get(name=REFRESH_SCHEDULE).cron == "30 4 * * 6"


def test_the_refresh_task_asks_again_only_for_stale_symbols(reference_data):
    refresh_schedule_ensure()
    schedule_kwargs = ast.literal_eval(str(Schedule.objects.get(name=REFRESH_SCHEDULE).kwargs))  # as django-q2 does
    fresh = make_symbol("FRESH", "NYSE", "STOCK_NYSE", enriched_at=timezone.now() - timedelta(days=2))
    stale = make_symbol("STALE", "NYSE", "STOCK_NYSE", enriched_at=timezone.now() - timedelta(days=8))
    options = {**schedule_kwargs["options"], "sources": ["LOCAL"], "concurrency": 1}
    out = tasks.assets_refresh_stale(options=options)
    assert out["total"] == 1
    assert stale.enrichment_results.count() == 1 and fresh.enrichment_results.count() == 0


def test_the_integrity_status_counts_enrichment_coverage_the_same_way(catalogue_of_four):
    markets = integrity_status()["markets"]
    assert markets["NASDAQ"]["symbols_enriched"] == 2  # AAPL enriched, CALM partially
    assert markets["NASDAQ"]["enrichment_coverage"] == 66.67 and markets["BIST"]["enrichment_coverage"] == 0.0
