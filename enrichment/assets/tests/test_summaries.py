"""Metadata enrichment keeps the symbol summaries exact; coverage and the enrichment
status read them and give what a count of the symbols gives."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import Avg, Count, Q
from django.utils import timezone

from enrichment.assets.selectors import COVERAGE_FIELDS, enrichment_coverage, enrichment_status
from enrichment.assets.services.enrich import assets_enrich
from enrichment.assets.services.enrich_options import EnrichOptions
from enrichment.assets.tests.test_enrich_assets import FAST, make_symbol, serve_aapl
from etl.models import Symbol

pytestmark = pytest.mark.django_db


def scanned_coverage() -> dict:
    active = Symbol.objects.filter(is_active=True)
    rows = active.values("market__code").annotate(
        targets=Count("id"),
        enriched=Count("id", filter=Q(enriched_at__isnull=False)),
        partial=Count("id", filter=Q(enriched_at__isnull=True) & ~Q(name="")),
        **{
            f"f_{name}": Count("id", filter=Q(market_cap__isnull=False) if name == "market_cap" else ~Q(**{name: ""}))
            for name in COVERAGE_FIELDS
        },
    )
    return {
        r["market__code"]: (r["targets"], r["enriched"], r["partial"], [r[f"f_{n}"] for n in COVERAGE_FIELDS])
        for r in rows
    }


def assert_read_as_scanned() -> None:
    coverage = enrichment_coverage()
    read = {
        m["market"]: (m["targets"], m["enriched"], m["partial"], [m["fields"][n]["filled"] for n in COVERAGE_FIELDS])
        for m in coverage["markets"]
    }
    assert read == scanned_coverage()
    active = Symbol.objects.filter(is_active=True)
    cutoff = timezone.now() - timedelta(days=30)
    status = enrichment_status(stale_days=30)
    assert status["symbols"] == active.count()
    assert status["enriched"] == active.filter(enriched_at__isnull=False).count()
    assert status["never_enriched"] == active.filter(enriched_at__isnull=True).count()
    assert status["stale"] == active.filter(enriched_at__lt=cutoff).count()
    mean = active.aggregate(m=Avg("data_quality_score"))["m"]
    assert status["average_quality"] == (round(mean, 1) if mean is not None else None)


def test_enrichment_from_providers_and_the_local_catalogue_keeps_the_summaries_exact(
    providers, httpserver, assert_summaries_exact
):
    make_symbol("AAPL", "NASDAQ", "STOCK_NASDAQ")
    make_symbol("THYAO", "BIST", "STOCK_BIST")
    make_symbol("OLD", "NYSE", "STOCK_NYSE", enriched_at=timezone.now() - timedelta(days=45), data_quality_score=40)
    make_symbol("EDGE", "NYSE", "STOCK_NYSE", enriched_at=timezone.now() - timedelta(days=30, minutes=5))
    serve_aapl(httpserver)
    assert_summaries_exact()
    assert_read_as_scanned()
    assets_enrich(options=EnrichOptions(concurrency=1, symbols=("AAPL@NASDAQ",)), client_options=FAST)
    assets_enrich(options=EnrichOptions.from_dict({"sources": ["LOCAL"], "concurrency": 1}))
    assert_summaries_exact()
    assert_read_as_scanned()
    assert enrichment_status()["stale"] == 2
    Symbol.objects.filter(ticker="OLD").update(is_active=False)
    assert_summaries_exact()
    assert_read_as_scanned()
