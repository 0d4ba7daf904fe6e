"""Remote candle sources through the real provider clients against a local HTTP server:
Binance futures (klines + funding + open interest), Yahoo chart, fallback by asset class,
and a backfill from Binance into market_data_v2."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from werkzeug.wrappers import Response

from enrichment.candles.services.backfill import backfill_plan, backfill_run
from enrichment.candles.source_registry import get_source, source_codes
from enrichment.candles.tests.feature_fixtures import make_symbol
from enrichment.models import BackfillState, MarketDataV2
from enrichment.providers.tests import payloads
from etl.models import DataProvider, SymbolMapping

T0 = datetime(2024, 3, 1, tzinfo=UTC)
HOUR_MS = 3_600_000
BARS = 72


def t0_ms() -> int:
    return int(T0.timestamp() * 1000)


def klines_handler(request):
    """Klines as Binance pages them: bars in [startTime, endTime], at most `limit`."""
    start, end, limit = (int(request.args[k]) for k in ("startTime", "endTime", "limit"))
    rows = [payloads.binance_kline(t0_ms() + i * HOUR_MS, i) for i in range(BARS)]
    rows = [r for r in rows if start <= r[0] <= end][:limit]
    return Response(json.dumps(rows), content_type="application/json")


def funding_handler(request):
    start, end = int(request.args["startTime"]), int(request.args["endTime"])
    rows = [
        {
            "symbol": "BTCUSDT",
            "fundingTime": t0_ms() + h * HOUR_MS + 5,
            "fundingRate": f"{0.0001 * (h + 1):.6f}",
            "markPrice": "60000",
        }
        for h in range(0, BARS, 8)
    ]
    return Response(json.dumps([r for r in rows if start <= r["fundingTime"] <= end]), content_type="application/json")


def oi_handler(request):
    start, end = int(request.args["startTime"]), int(request.args["endTime"])
    rows = [
        {
            "symbol": "BTCUSDT",
            "sumOpenInterest": str(1000.0 + h),
            "sumOpenInterestValue": "1",
            "timestamp": t0_ms() + h * HOUR_MS,
        }
        for h in range(BARS)
    ]
    return Response(json.dumps([r for r in rows if start <= r["timestamp"] <= end]), content_type="application/json")


def long_short_handler(request):
    start, end = int(request.args["startTime"]), int(request.args["endTime"])
    rows = [payloads.binance_long_short("BTCUSDT", t0_ms() + h * HOUR_MS, 1.0 + h / 100) for h in range(BARS)]
    return Response(
        json.dumps([r for r in rows if start <= int(r["timestamp"]) <= end]), content_type="application/json"
    )


@pytest.fixture
def btc(providers):
    symbol = make_symbol("BTC", "BINANCE", "CRYPTO")
    SymbolMapping.objects.create(symbol=symbol, provider=providers["BINANCE"], provider_symbol="BTCUSDT")
    SymbolMapping.objects.create(symbol=symbol, provider=providers["YAHOO_FINANCE"], provider_symbol="BTC-USD")
    return symbol


@pytest.fixture
def binance(httpserver):
    httpserver.expect_request("/fapi/v1/klines").respond_with_handler(klines_handler)
    httpserver.expect_request("/fapi/v1/fundingRate").respond_with_handler(funding_handler)
    httpserver.expect_request("/futures/data/openInterestHist").respond_with_handler(oi_handler)
    httpserver.expect_request("/futures/data/globalLongShortAccountRatio").respond_with_handler(long_short_handler)
    return httpserver


def test_remote_sources_are_registered_beside_the_local_one(db):
    assert {"market_data", "BINANCE", "YAHOO_FINANCE", "POLYGON", "auto"} <= set(source_codes())


def test_binance_source_brings_klines_funding_and_open_interest(btc, binance):
    frame = get_source("BINANCE").fetch(symbol=btc, timeframe="1h", start=T0, end=T0 + timedelta(hours=24))
    assert len(frame) == 24 and frame["ts"].iloc[-1] == T0 + timedelta(hours=23)  # end is exclusive
    assert frame["close"].iloc[0] == 101.0 and frame["taker_buy_volume"].iloc[0] == 5.0
    assert frame["trades"].iloc[3] == 103
    # Funding at 00:00:00.005 belongs to the 00:00 bar; bars between fundings carry none.
    assert frame["funding_rate"].iloc[0] == 0.0001 and frame["funding_rate"].iloc[8] == 0.0009
    assert np.isnan(frame["funding_rate"].iloc[1])
    assert frame["open_interest"].tolist() == [1000.0 + h for h in range(24)]
    assert frame["long_short_account_ratio"].tolist() == pytest.approx([1.0 + h / 100 for h in range(24)])


def test_taker_statistics_fill_a_kline_without_taker_volume_and_a_failing_extra_is_left_null(btc, httpserver):
    def klines_without_taker(request):
        rows = json.loads(klines_handler(request).get_data())
        for row in rows:
            row[9] = "nan"
        return Response(json.dumps(rows), content_type="application/json")

    httpserver.expect_request("/fapi/v1/klines").respond_with_handler(klines_without_taker)
    httpserver.expect_request("/fapi/v1/fundingRate").respond_with_json([])
    httpserver.expect_request("/futures/data/openInterestHist").respond_with_json({"code": -1, "msg": "x"}, status=400)
    httpserver.expect_request("/futures/data/globalLongShortAccountRatio").respond_with_json([])
    httpserver.expect_request("/futures/data/takerlongshortRatio").respond_with_json(
        [payloads.binance_taker_ratio(t0_ms() + h * HOUR_MS, 6.0 + h, 4.0) for h in range(4)]
    )
    frame = get_source("BINANCE").fetch(symbol=btc, timeframe="1h", start=T0, end=T0 + timedelta(hours=4))
    assert frame["taker_buy_volume"].tolist() == [6.0, 7.0, 8.0, 9.0]
    assert frame["open_interest"].isna().all() and frame["close"].iloc[0] == 101.0


def test_fallback_goes_to_the_next_provider_when_the_first_refuses(btc, httpserver):
    httpserver.expect_request("/fapi/v1/klines").respond_with_json(
        {"code": -1121, "msg": "Invalid symbol."}, status=400
    )
    httpserver.expect_request("/v8/finance/chart/BTC-USD").respond_with_json(
        payloads.yahoo_chart("BTC-USD", start=T0, bars=5, instrument="CRYPTOCURRENCY", tz="UTC")
    )
    frame = get_source("auto").fetch(symbol=btc, timeframe="1d", start=T0, end=T0 + timedelta(days=5))
    assert len(frame) == 5 and frame["close"].iloc[0] == 100.25


def test_fallback_skips_disabled_providers(btc, binance, httpserver):
    DataProvider.objects.filter(code="BINANCE").update(is_enabled=False)
    httpserver.expect_request("/v8/finance/chart/BTC-USD").respond_with_json(
        payloads.yahoo_chart("BTC-USD", start=T0, bars=3, instrument="CRYPTOCURRENCY", tz="UTC")
    )
    frame = get_source("auto").fetch(symbol=btc, timeframe="1d", start=T0, end=T0 + timedelta(days=3))
    assert len(frame) == 3 and np.isnan(frame["funding_rate"]).all()


def test_backfill_from_binance_fills_market_data_v2_in_chunks_with_features(btc, binance):
    state = backfill_plan(
        symbol=btc, timeframe="1h", source="BINANCE", start=T0, end=T0 + timedelta(hours=BARS), chunk_bars=20
    )
    result = backfill_run(state=state)
    assert result.status == "done" and result.rows_written == BARS
    assert BackfillState.objects.get(pk=state.pk).chunks_done == 4
    rows = list(MarketDataV2.objects.filter(symbol=btc, timeframe="1h").order_by("ts"))
    assert len(rows) == BARS and {r.source for r in rows} == {"BINANCE"}
    assert rows[16].funding_rate == pytest.approx(0.0017) and rows[50].open_interest == 1050.0
    assert rows[30].delta == pytest.approx(0.0) and rows[-1].atr_14 is not None and rows[-1].sma_50 is not None
    assert rows[-1].open_interest_change == pytest.approx(1071.0 / 1070.0 - 1)
    assert rows[-1].long_short_ratio == pytest.approx(1.71)
    assert rows[-1].funding_rate_percentile is None  # nine fundings: too few for the 90 of the window
    # Running it again fetches nothing more and changes nothing.
    assert backfill_run(state=state).chunks == 0


def test_a_month_of_backfilled_funding_fills_the_funding_percentile(btc, httpserver):
    """4-hour bars for 31 days: 93 fundings, so the last four have a 90-observation window."""
    four_hours = 4 * HOUR_MS
    bars = 31 * 6

    def klines(request):
        start, end, limit = (int(request.args[k]) for k in ("startTime", "endTime", "limit"))
        rows = [payloads.binance_kline(t0_ms() + i * four_hours, i, four_hours) for i in range(bars)]
        return Response(json.dumps([r for r in rows if start <= r[0] <= end][:limit]), content_type="application/json")

    def funding(request):
        start, end = int(request.args["startTime"]), int(request.args["endTime"])
        rows = [
            {"symbol": "BTCUSDT", "fundingTime": t0_ms() + k * 8 * HOUR_MS, "fundingRate": f"{(k % 7) * 1e-5:.6f}"}
            for k in range(bars // 2)
        ]
        return Response(
            json.dumps([r for r in rows if start <= r["fundingTime"] <= end]), content_type="application/json"
        )

    httpserver.expect_request("/fapi/v1/klines").respond_with_handler(klines)
    httpserver.expect_request("/fapi/v1/fundingRate").respond_with_handler(funding)
    for path in ("openInterestHist", "globalLongShortAccountRatio"):
        httpserver.expect_request(f"/futures/data/{path}").respond_with_json([])
    state = backfill_plan(symbol=btc, timeframe="4h", source="BINANCE", start=T0, end=T0 + timedelta(days=31))
    assert backfill_run(state=state).rows_written == bars
    rows = list(MarketDataV2.objects.filter(symbol=btc, timeframe="4h").order_by("ts"))
    filled = [r for r in rows if r.funding_rate_percentile is not None]
    assert len(filled) == 93 - 89
    last = rows[-2]  # k = 92: rate 92 % 7 = 1 -> 1e-5; of the 90 before and with it, those <= it
    window = [(k % 7) for k in range(3, 93)]
    assert last.funding_rate_percentile == pytest.approx(100 * sum(v <= 1 for v in window) / 90)
