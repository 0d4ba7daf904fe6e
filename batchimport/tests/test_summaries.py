"""The import keeps the integrity summaries exact (statement triggers on market_data)."""

from __future__ import annotations

import pytest
from django.db.models import F

from batchimport import services
from etl import selectors
from etl.models import AssetClass, Market, MarketData, Symbol

pytestmark = pytest.mark.django_db


def run(path, **kw):
    return services.import_job_start(job=services.import_job_create(path=str(path), **kw))


def test_new_duplicate_and_overwriting_imports_keep_the_summaries_exact(
    sample_folder, reference_data, data_root, assert_summaries_exact
):
    Symbol.objects.create(
        ticker="THYAO", market=Market.objects.get(code="BIST"), asset_class=AssetClass.objects.get(code="STOCK_BIST")
    )
    first = run("DATA")  # new rows, THYAO's linked at write
    assert_summaries_exact()
    status = selectors.integrity_status()["overall"]
    assert status["candles"] == first.rows_inserted == MarketData.objects.count()
    assert status["candles_without_symbol"] == MarketData.objects.filter(symbol=None).count()

    again = run("DATA")  # duplicates only
    assert again.rows_inserted == 0
    assert_summaries_exact()

    MarketData.objects.filter(ticker="GARAN").update(asset_class=None, close=F("low") - 1)
    over = run("DATA", overwrite=True)  # the changed rows come back
    assert over.rows_updated > 0
    assert_summaries_exact()
    assert selectors.integrity_status()["overall"]["candles"] == MarketData.objects.count()
