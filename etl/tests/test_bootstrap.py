from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from etl import services
from etl.models import AssetClass, DataProvider, Market, TradingSession

pytestmark = pytest.mark.django_db


def test_bootstrap_creates_reference_data():
    result = services.reference_data_bootstrap()
    assert result.created == {
        "asset_classes": 9,
        "markets": 5,
        "trading_sessions": 17,
        "data_providers": 5,
        "schedules": 7,  # retention, partitions, snapshot, enrichment, summary fold, recount, metrics fold
        "import_market_settings": 4,  # registered by batchimport: BIST, CRYPTO, NASDAQ, NYSE
    }
    assert set(AssetClass.objects.values_list("code", flat=True)) >= {
        "CRYPTO",
        "STOCK",
        "STOCK_BIST",
        "STOCK_NASDAQ",
        "STOCK_NYSE",
        "FOREX",
        "COMMODITY",
        "ETF",
        "INDICES",
    }
    bist = Market.objects.get(code="BIST")
    assert (bist.mic, bist.timezone, bist.currency, bist.country) == ("XIST", "Europe/Istanbul", "TRY", "TR")
    assert DataProvider.objects.count() == 5


def test_second_bootstrap_creates_and_changes_nothing():
    services.reference_data_bootstrap()
    again = services.reference_data_bootstrap()
    assert again.total_created == 0
    assert again.total_updated == 0


def test_operator_edit_survives_bootstrap_unless_overwrite():
    services.reference_data_bootstrap()
    Market.objects.filter(code="BIST").update(name="Istanbul (edited)")
    services.reference_data_bootstrap()
    assert Market.objects.get(code="BIST").name == "Istanbul (edited)"
    result = services.reference_data_bootstrap(overwrite=True)
    assert result.updated["markets"] == 1
    assert Market.objects.get(code="BIST").name == "Borsa Istanbul"


def test_command_json_summary():
    out = StringIO()
    call_command("bootstrap_reference_data", "--json", stdout=out)
    summary = json.loads(out.getvalue())
    assert summary["ok"] is True
    assert summary["total_created"] == 47
    assert TradingSession.objects.filter(market__code="BINANCE").count() == 1
