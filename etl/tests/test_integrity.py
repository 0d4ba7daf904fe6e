from __future__ import annotations

import pytest
from django.utils import timezone

from etl import selectors, services
from etl.models import MarketData, Symbol

pytestmark = pytest.mark.django_db


def test_empty_database_has_no_quality_yet(reference_data):
    status = selectors.integrity_status()
    assert status["overall"]["candles"] == 0
    assert status["overall"]["overall_quality"] is None
    assert status["status"] == "attention"


def test_indicators_per_market_and_overall(reference_data, make_candles):
    make_candles([("BTCUSDT", "BINANCE"), ("ETHUSDT", "BINANCE")], bars=5, asset_class="CRYPTO")
    make_candles([("THYAO", "BIST")], bars=5, asset_class="BIST")  # folder name: inconsistent class
    make_candles([("AAPL", "NASDAQ")], bars=5, asset_class="STOCK_NASDAQ")
    services.symbols_sync(venues=["BINANCE", "BIST"])

    status = selectors.integrity_status()
    overall = status["overall"]
    assert overall["candles"] == 20
    assert overall["candles_without_symbol"] == 5
    assert overall["symbol_coverage"] == 75.0
    # Of the 15 linked candles, the 10 crypto ones agree with their symbol's class.
    assert overall["asset_class_consistency"] == pytest.approx(66.67)
    assert overall["enrichment_coverage"] == 0.0
    # 0.4 * 75 + 0.3 * 66.67 + 0.3 * 0 = 50
    assert overall["overall_quality"] == 50
    assert status["status"] == "attention"
    failing = {c["name"] for c in status["checks"] if not c["ok"]}
    assert failing == {"candles_without_symbol", "symbol_coverage", "enrichment_coverage", "overall_quality"}

    binance = status["markets"]["BINANCE"]
    assert (binance["symbol_coverage"], binance["asset_class_consistency"]) == (100.0, 100.0)
    assert status["markets"]["BIST"]["asset_class_consistency"] == 0.0
    assert status["markets"]["NASDAQ"]["candles_without_symbol"] == 5
    assert status["markets"]["NASDAQ"]["symbol_coverage"] == 0.0


def test_healthy_when_every_goal_is_met(reference_data, make_candles):
    make_candles([("BTCUSDT", "BINANCE")], bars=3, asset_class="CRYPTO")
    services.symbols_sync()
    Symbol.objects.update(enriched_at=timezone.now(), data_quality_score=90)
    status = selectors.integrity_status()
    assert status["overall"]["overall_quality"] == 100
    assert status["overall"]["mean_symbol_quality_score"] == 90.0
    assert status["status"] == "healthy"
    assert MarketData.objects.filter(symbol__isnull=True).count() == 0
