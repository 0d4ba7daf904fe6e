"""The admin pages of the partitioned candle tables: list, filters, change page by id."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.urls import reverse

from batchimport.models import ImportFile, ImportJob
from enrichment.candles.models import MarketDataV2
from etl.models import Market, MarketData, Symbol

pytestmark = pytest.mark.django_db


@pytest.fixture
def candles(reference_data):
    job = ImportJob.objects.create(path="NASDAQ", market="NASDAQ")
    import_file = ImportFile.objects.create(job=job, relpath="NASDAQ/AAPL.csv", market="NASDAQ")
    rows = [
        MarketData.objects.create(
            ticker=ticker, market=market, timeframe="1d", ts=datetime(year, 3, 1, tzinfo=UTC), open=1, high=2,
            low=1, close=1.5, volume=10, asset_class=klass, import_file_id=import_file.pk,
        )
        for ticker, market, klass, year in (
            ("AAPL", "NASDAQ", "STOCK_NASDAQ", 2023), ("AAPL", "NASDAQ", "STOCK_NASDAQ", 2024),
            ("THYAO", "BIST", "STOCK_BIST", 2024),
        )
    ]  # fmt: skip
    return rows, import_file


def test_the_candle_list_filters_by_reference_codes_and_pages_in_key_order(admin_client, candles):
    url = reverse("admin:etl_marketdata_changelist")
    page = admin_client.get(url)
    assert page.status_code == 200
    rows = candles[0]
    assert [c.pk for c in page.context["cl"].result_list] == [rows[2].pk, rows[0].pk, rows[1].pk]  # market, ticker, ts
    assert '"id"' not in str(page.context["cl"].queryset.query).split("ORDER BY")[1]
    bist = admin_client.get(url, {"market": "BIST"})
    assert [c.ticker for c in bist.context["cl"].result_list] == ["THYAO"]
    nasdaq = admin_client.get(url, {"asset_class": "STOCK_NASDAQ"})
    assert len(nasdaq.context["cl"].result_list) == 2


def test_the_change_page_finds_a_candle_by_id_and_links_its_import_file(admin_client, candles):
    rows, import_file = candles
    page = admin_client.get(reverse("admin:etl_marketdata_change", args=[rows[0].pk]))
    assert page.status_code == 200
    link = reverse("admin:batchimport_importfile_change", args=[import_file.pk])
    assert link in page.content.decode()
    with connection.cursor() as cur:  # the id lookup goes through the BRIN index of each partition
        cur.execute("SET enable_seqscan = off")
        cur.execute("EXPLAIN SELECT * FROM market_data WHERE id = %s", [rows[0].pk])
        plan = "\n".join(r[0] for r in cur.fetchall())
        cur.execute("RESET enable_seqscan")
    assert "market_data_id_brin" in plan or "id_idx" in plan


def test_the_v2_change_page_finds_a_row_by_id(admin_client, reference_data):
    symbol = Symbol.objects.create(ticker="AAPL", market=Market.objects.get(code="NASDAQ"))
    row = MarketDataV2.objects.create(
        symbol=symbol, timeframe="1d", ts=datetime(2024, 3, 1, tzinfo=UTC), open=1, high=2, low=1, close=1.5,
        volume=10, source="market_data",
    )  # fmt: skip
    assert admin_client.get(reverse("admin:enrichment_marketdatav2_change", args=[row.pk])).status_code == 200
    listing = admin_client.get(reverse("admin:enrichment_marketdatav2_changelist"))
    assert listing.status_code == 200
    # No "-id" added for a total order: the key order is total, and an id order would sort every row.
    order = str(listing.context["cl"].queryset.query).split("ORDER BY")[1]
    assert '"id"' not in order and '"symbol_id" ASC' in order
