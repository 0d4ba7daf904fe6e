"""The live poller against a local market shaped like Binance's and Yahoo's APIs that makes a
new 1-minute bar per symbol every minute of a fake clock: each bar stored once with features
equal to a full recompute, an hour-long outage caught up without a gap, a stock market left
alone outside its session and on its holidays, the master switch honoured."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from enrichment.candles.models import LiveMarket, LiveSeries
from enrichment.candles.services.feature_compute import features_compute
from enrichment.candles.services.live import INITIAL_BARS, live_markets_ensure, live_poll
from enrichment.candles.tests.feature_fixtures import make_symbol
from enrichment.candles.tests.live_server import LiveMarketServer, bar
from enrichment.models import MarketDataV2
from enrichment.providers import clock
from etl.models import DataProvider, MarketData, SymbolMapping

pytestmark = pytest.mark.django_db

# Monday 4 March 2024, 15:00 UTC: New York (EST) is in its session, Binance always is.
T0 = datetime(2024, 3, 4, 15, 0, tzinfo=UTC)
FEATURES = (
    "sma_20",
    "sma_50",
    "ema_20",
    "rsi_14",
    "atr_14",
    "volatility_50",
    "delta",
    "buy_sell_ratio",
    "open_interest_change",
    "long_short_ratio",
    "return_1h",
    "vwap_20",
    "quality_score",
)


class FakeClock:
    def __init__(self, start: datetime):
        self.moment = start

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **kw) -> None:
        self.moment += timedelta(**kw)


@pytest.fixture
def fake_clock(monkeypatch) -> FakeClock:
    fake = FakeClock(T0 + timedelta(seconds=2))
    monkeypatch.setattr(clock, "now", fake)
    return fake


@pytest.fixture
def market(providers, httpserver, fake_clock) -> LiveMarketServer:
    server = LiveMarketServer(now_ms=lambda: int(fake_clock().timestamp() * 1000))
    server.register(httpserver)
    DataProvider.objects.filter(code="POLYGON").update(is_enabled=False)  # stocks from Yahoo's chart
    for ticker, pair in (("BTC", "BTCUSDT"), ("ETH", "ETHUSDT")):
        symbol = make_symbol(ticker, "BINANCE", "CRYPTO")
        SymbolMapping.objects.create(symbol=symbol, provider=providers["BINANCE"], provider_symbol=pair)
    make_symbol("IBM", "NYSE", "STOCK_NYSE")
    live_markets_ensure()
    LiveMarket.objects.filter(market__code__in=["BINANCE", "NYSE"]).update(is_enabled=True)
    return server


def poll(fake_clock: FakeClock) -> dict:
    return live_poll(now=fake_clock()).to_dict()


def rows(ticker: str) -> list[MarketDataV2]:
    return list(MarketDataV2.objects.filter(symbol__ticker=ticker, timeframe="1m").order_by("ts"))


def feature_matrix(ticker: str) -> np.ndarray:
    return np.array([[np.nan if getattr(r, f) is None else getattr(r, f) for f in FEATURES] for r in rows(ticker)])


def test_each_new_bar_is_stored_once_with_features_equal_to_a_full_recompute(market, fake_clock):
    first = poll(fake_clock)
    assert first["bars"] == 2 * INITIAL_BARS + 30  # New York opened at 14:30: 30 bars of IBM so far
    for _ in range(10):
        fake_clock.advance(minutes=1)
        result = poll(fake_clock)
        assert result["bars"] == 3 and result["errors"] == []
    btc = rows("BTC")
    assert len(btc) == INITIAL_BARS + 10 and btc[-1].ts == T0 + timedelta(minutes=9)  # the bar still open is not
    assert {r.source for r in btc} == {"BINANCE"} and {r.source for r in rows("IBM")} == {"YAHOO_FINANCE"}
    expected = bar("BTCUSDT", int(btc[-1].ts.timestamp()) // 60)
    assert (btc[-1].close, btc[-1].taker_buy_volume) == (expected["close"], expected["taker_buy_volume"])
    # Raw candles too, once each, linked to the symbol.
    assert MarketData.objects.filter(ticker="BTC", timeframe="1m", symbol__isnull=False).count() == len(btc)
    assert LiveSeries.objects.get(symbol__ticker="BTC").bars_stored == len(btc)
    # Crypto extras arrive with the candles: open interest and the long/short ratio every 5 minutes.
    assert btc[-5].open_interest is not None and btc[-5].long_short_account_ratio is not None
    assert btc[-1].delta is not None and len({r.delta for r in btc}) > 10
    incremental = {t: feature_matrix(t) for t in ("BTC", "ETH", "IBM")}
    for ticker in incremental:
        features_compute(symbol=rows(ticker)[0].symbol, timeframe="1m", full=True)
        np.testing.assert_array_equal(feature_matrix(ticker), incremental[ticker], err_msg=ticker)
    assert np.isfinite(incremental["BTC"][-1]).sum() >= len(FEATURES) - 2


def test_after_an_hour_long_outage_the_poller_catches_up_without_a_gap(market, fake_clock):
    poll(fake_clock)
    fake_clock.advance(hours=1)
    result = poll(fake_clock)
    assert result["bars"] == 3 * 60
    for ticker in ("BTC", "IBM"):
        stamps = [r.ts for r in rows(ticker)]
        assert len(stamps) == len(set(stamps))
        assert {b - a for a, b in zip(stamps, stamps[1:], strict=False)} == {timedelta(minutes=1)}
        assert not [r for r in rows(ticker) if r.quality_flags & 1]
    lag = LiveSeries.objects.get(symbol__ticker="BTC").last_lag_seconds
    assert 0 <= lag < 30
    assert poll(fake_clock)["bars"] == 0  # nothing new: nothing written


def test_a_stock_market_is_not_polled_outside_its_session_or_on_its_holidays(market, fake_clock):
    def yahoo_requests() -> int:
        return sum(n for path, n in market.requests.items() if path.startswith("/v8/"))

    for moment in (
        datetime(2024, 3, 4, 23, 0, tzinfo=UTC),  # the night
        datetime(2024, 3, 9, 16, 0, tzinfo=UTC),  # a Saturday
        datetime(2024, 11, 28, 16, 0, tzinfo=UTC),  # Thanksgiving
        datetime(2024, 11, 29, 18, 30, tzinfo=UTC),  # after Black Friday's 13:00 close
    ):
        fake_clock.moment = moment
        result = live_poll(now=moment, markets=["NYSE"]).to_dict()
        assert result["markets"][0]["skipped_because"] == "the market is closed", moment
    assert yahoo_requests() == 0
    fake_clock.moment = datetime(2024, 11, 29, 18, 0, 5, tzinfo=UTC)  # the early close's last bar is due
    assert live_poll(now=fake_clock(), markets=["NYSE"]).markets[0].polled == 1
    assert yahoo_requests() == 1
    # Crypto trades on: the night's poll of Binance fetches bars.
    assert live_poll(now=datetime(2024, 3, 4, 23, 0, tzinfo=UTC), markets=["BINANCE"]).bars > 0


def test_the_master_switch_and_a_disabled_symbol_are_honoured(market, fake_clock, settings):
    settings.DATA_ENRICHMENT_ENABLED = False
    assert poll(fake_clock) == {
        "markets": [],
        "errors": [],
        "skipped_because": "DATA_ENRICHMENT_ENABLED is off",
        "bars": 0,
    }
    assert not market.requests
    settings.DATA_ENRICHMENT_ENABLED = True
    eth = make_symbol("ETH", "BINANCE", "CRYPTO")
    LiveSeries.objects.create(symbol=eth, timeframe="1m", is_enabled=False)
    poll(fake_clock)
    assert not MarketDataV2.objects.filter(symbol=eth).exists() and rows("BTC")


def test_the_live_admin_pages_and_the_poll_now_action(market, admin_client, django_capture_on_commit_callbacks):
    from django.urls import reverse

    for name in ("enrichment_livemarket", "enrichment_liveseries", "etl_marketclosure"):
        assert admin_client.get(reverse(f"admin:{name}_changelist")).status_code == 200, name
    binance = LiveMarket.objects.get(market__code="BINANCE")
    assert admin_client.get(reverse("admin:etl_market_change", args=[binance.market_id])).status_code == 200
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(
            reverse("admin:enrichment_livemarket_changelist"),
            {"action": "poll_now", "_selected_action": [binance.pk]},
            follow=True,
        )
    assert "Queued a poll of BINANCE." in response.content.decode() and len(callbacks) == 1


def test_the_live_poll_command(market, fake_clock):
    import json
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("live_poll", "--market", "BINANCE", "--json", stdout=out)
    assert json.loads(out.getvalue())["ok"]
    assert MarketDataV2.objects.filter(symbol__ticker="BTC").count() == INITIAL_BARS


def test_freshness_counts_fresh_and_stale_series_and_alerts_past_the_critical_lag(
    market, fake_clock, settings, mailoutbox, client, api_client_for
):
    from enrichment.candles.freshness import freshness_summary

    settings.ADMINS = [("ops", "ops@example.com")]
    poll(fake_clock)
    by_market = {m.market: m for m in freshness_summary(now=fake_clock())}
    assert (by_market["BINANCE"].fresh, by_market["BINANCE"].stale) == (2, 0)
    assert by_market["BINANCE"].target_seconds == 30 and by_market["NYSE"].target_seconds == 60
    assert not mailoutbox
    # Binance stops answering for five minutes: the newest bars wait, past the 120 s critical lag.
    fake_clock.advance(minutes=5)
    summary = {m.market: m for m in freshness_summary(now=fake_clock())}["BINANCE"]
    assert (summary.fresh, summary.stale, summary.critical) == (0, 2, 2)
    assert summary.stalest[0].lag_seconds == pytest.approx(240 + 2)
    LiveMarket.objects.filter(market__code="NYSE").update(is_enabled=False)
    market.requests.clear()
    DataProvider.objects.filter(code__in=["BINANCE", "YAHOO_FINANCE"]).update(is_enabled=False)
    poll(fake_clock)
    assert len(mailoutbox) == 1 and "past the critical lag of 120 s" in mailoutbox[0].body
    poll(fake_clock)
    assert len(mailoutbox) == 1  # once an hour, not every minute
    # The API per symbol and /metrics say the same.
    answer = api_client_for().get("/api/v1/enrichment/freshness/BTC").json()
    assert answer["series"][0]["stale"] and answer["series"][0]["critical"]
    metrics = client.get("/metrics").content.decode()
    assert 'mytrader_live_stale_series{market="BINANCE"} 2.0' in metrics
    assert 'mytrader_live_lag_seconds_bucket{le="300.0",market="BINANCE"} 2.0' in metrics
