"""Rate limit and circuit breaker shared between processes, and fallback by priority."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from werkzeug import Response

from conftest import child_database_url
from enrichment.models import CircuitState, FetchLog
from enrichment.providers import circuit, clock
from enrichment.providers.clients import get_client
from enrichment.providers.errors import ProviderError
from enrichment.providers.fallback import call_with_fallback, candles_fetch_with_fallback
from enrichment.providers.ratelimit import rate_limit_acquire, rate_limit_budget
from enrichment.providers.tests import payloads
from etl.models import DataProvider, Market, Symbol

WORKER = Path(__file__).with_name("provider_worker.py")


def run_workers(*argsets: tuple[str, dict]) -> list[dict]:
    """Start one worker process per argset at the same moment; wait for all."""
    env = {
        **os.environ,
        "DATABASE_URL": child_database_url(),
        "LOG_LEVEL": "WARNING",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), mode, json.dumps(args)], env=env, stdout=subprocess.PIPE, text=True
        )
        for mode, args in argsets
    ]
    out = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, stdout
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


class Clock:
    def __init__(self, monkeypatch):
        self.offset = timedelta(0)
        real = clock.now
        monkeypatch.setattr(clock, "now", lambda: real() + self.offset)

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def fake_clock(monkeypatch) -> Clock:
    return Clock(monkeypatch)


# -- rate limit ---------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_two_worker_processes_stay_within_the_budget_counted_at_the_server(providers, httpserver):
    arrivals: list[float] = []
    lock = threading.Lock()

    def handler(request):
        with lock:
            arrivals.append(time.monotonic())
        return Response(
            json.dumps(payloads.yahoo_chart("NVDA", start=payloads.T0, bars=1)), content_type="application/json"
        )

    httpserver.expect_request("/v8/finance/chart/NVDA").respond_with_handler(handler)
    # 600 a minute is 10 per one-second window; two workers want 16 calls each.
    DataProvider.objects.filter(code="YAHOO_FINANCE").update(rate_limit_per_minute=600)
    window, limit = 1.0, 10
    args = {"provider": "YAHOO_FINANCE", "symbol": "NVDA", "calls": 16, "window": window}
    results = run_workers(("hammer", args), ("hammer", args))
    assert [r["outcomes"] for r in results] == [["ok"] * 16, ["ok"] * 16]
    assert len(arrivals) == 32
    arrivals.sort()
    # Any stretch of one window (less 0.2 s for scheduling jitter on a loaded machine)
    # holds at most `limit` requests; unthrottled, all 32 would arrive within a second.
    busiest = max(sum(1 for t in arrivals if start <= t < start + window - 0.2) for start in arrivals)
    assert busiest <= limit
    # And the budget was actually used: 32 calls at 10 a second span at least 2 further windows.
    assert arrivals[-1] - arrivals[0] >= (32 // limit - 1) * window - 0.2


@pytest.mark.django_db
def test_rate_limiter_waits_for_the_oldest_grant_to_leave_the_window(providers):
    waits: list[float] = []
    for _ in range(3):
        rate_limit_acquire(provider_code="X", budget=180, weight=1, window=1.0, sleep=waits.append)
    assert waits == []  # 180 a minute = 3 a second
    assert rate_limit_budget(provider_code="X", budget=180, window=1.0).remaining == 0
    with pytest.raises(ProviderError) as err:
        rate_limit_acquire(provider_code="X", budget=180, weight=1, window=1.0, max_wait=0.5, sleep=waits.append)
    assert err.value.reason == "rate_limited"
    with pytest.raises(ProviderError) as err:
        rate_limit_acquire(provider_code="X", budget=180, weight=5, window=1.0)
    assert err.value.permanent  # weight 5 can never fit 3 a second


@pytest.mark.django_db
def test_a_grant_counts_a_little_longer_than_the_window_for_requests_that_arrive_late(providers):
    from enrichment.models import RateLimitGrant

    # 60 a minute; one grant 60.5 s ago still counts (it may have reached the provider 0.5 s
    # after its grant), one 61.5 s ago no longer does.
    with connection.cursor() as cur:
        cur.execute("SELECT clock_timestamp()")
        (now,) = cur.fetchone()
    RateLimitGrant.objects.create(provider="X", weight=30, granted_at=now - timedelta(seconds=60.5))
    RateLimitGrant.objects.create(provider="X", weight=30, granted_at=now - timedelta(seconds=61.5))
    assert rate_limit_budget(provider_code="X", budget=60).remaining == 30
    waits: list[float] = []
    with pytest.raises(ProviderError):
        rate_limit_acquire(provider_code="X", budget=60, weight=31, max_wait=0.1, sleep=waits.append)
    assert rate_limit_acquire(provider_code="X", budget=60, weight=30, sleep=waits.append) == 0


# -- circuit breaker -------------------------------------------------------------------------------
@pytest.mark.django_db
def test_circuit_opens_after_three_failures_and_fails_fast(providers, httpserver, client_options):
    httpserver.expect_request("/v8/finance/chart/NVDA").respond_with_data("down", status=503)
    client = get_client("YAHOO_FINANCE", **{**client_options, "max_attempts": 1})
    for _ in range(3):
        with pytest.raises(ProviderError):
            client.fetch_asset_info(provider_symbol="NVDA")
    assert CircuitState.objects.get(provider="YAHOO_FINANCE").state == "open"
    with pytest.raises(ProviderError) as err:
        client.fetch_asset_info(provider_symbol="NVDA")
    assert err.value.reason == "circuit_open"
    assert len(httpserver.log) == 3  # the fourth call never left the process
    assert FetchLog.objects.filter(provider="YAHOO_FINANCE", outcome="circuit_open").count() == 1


@pytest.mark.django_db
def test_a_success_resets_the_failure_count(providers):
    circuit.circuit_record_failure("POLYGON", error="x")
    circuit.circuit_record_failure("POLYGON", error="x")
    circuit.circuit_record_success("POLYGON")
    circuit.circuit_record_failure("POLYGON", error="x")
    circuit.circuit_record_failure("POLYGON", error="x")
    assert circuit.circuit_state("POLYGON") == "closed"


@pytest.mark.django_db
def test_half_open_after_recovery_lets_one_trial_through_and_a_failure_reopens(providers, fake_clock):
    for _ in range(3):
        circuit.circuit_record_failure("POLYGON", error="boom")
    fake_clock.advance(299)
    with pytest.raises(ProviderError):
        circuit.circuit_before_call("POLYGON")
    fake_clock.advance(2)
    assert circuit.circuit_before_call("POLYGON") == "half_open"
    with pytest.raises(ProviderError, match="trial call"):
        circuit.circuit_before_call("POLYGON")  # a second caller while the trial runs
    circuit.circuit_record_failure("POLYGON", error="still down")
    state = CircuitState.objects.get(provider="POLYGON")
    assert state.state == "open" and state.last_error == "still down"


@pytest.mark.django_db
def test_circuit_settings_are_honoured(providers, settings, fake_clock):
    settings.ENRICHMENT_CIRCUIT_FAILURE_THRESHOLD = 2
    settings.ENRICHMENT_CIRCUIT_RECOVERY_SECONDS = 10
    circuit.circuit_record_failure("POLYGON", error="x")
    assert circuit.circuit_state("POLYGON") == "closed"
    circuit.circuit_record_failure("POLYGON", error="x")
    assert circuit.circuit_state("POLYGON") == "open"
    fake_clock.advance(11)
    assert circuit.circuit_state("POLYGON") == "half_open"


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_circuit_is_shared_between_processes_and_recovers(providers, httpserver, fake_clock, client_options):
    healthy = {"on": False}

    def handler(request):
        if healthy["on"]:
            return Response(
                json.dumps(payloads.yahoo_chart("NVDA", start=payloads.T0, bars=1)), content_type="application/json"
            )
        return Response("down", status=500)

    httpserver.expect_request("/v8/finance/chart/NVDA").respond_with_handler(handler)
    # Another process fails three times: the circuit opens for everyone.
    (first,) = run_workers(("fail", {"provider": "YAHOO_FINANCE", "symbol": "NVDA", "calls": 4}))
    assert first["outcomes"] == ["server_error"] * 3 + ["circuit_open"]
    assert len(httpserver.log) == 3
    client = get_client("YAHOO_FINANCE", **{**client_options, "max_attempts": 1})
    with pytest.raises(ProviderError) as err:
        client.fetch_asset_info(provider_symbol="NVDA")
    assert err.value.reason == "circuit_open" and len(httpserver.log) == 3
    # Candle work for NVDA falls back to the next candle provider by priority (Polygon) at once.
    start_ms, end_ms = int(payloads.T0.timestamp() * 1000), int((payloads.T0 + timedelta(days=1)).timestamp() * 1000)
    httpserver.expect_request(f"/v2/aggs/ticker/NVDA/range/1/day/{start_ms}/{end_ms}").respond_with_json(
        payloads.polygon_aggs(payloads.T0, 2)
    )
    DataProvider.objects.filter(code="BINANCE").update(is_enabled=False)
    nvda = Symbol.objects.create(ticker="NVDA", market=Market.objects.get(code="NASDAQ"))
    code, candles = candles_fetch_with_fallback(
        provider_symbols={"YAHOO_FINANCE": nvda.ticker, "POLYGON": nvda.ticker},
        timeframe="1d",
        start=payloads.T0,
        end=payloads.T0 + timedelta(days=1),
        client_options=client_options,
    )
    assert code == "POLYGON" and len(candles) == 2
    assert [r.path for r, _ in httpserver.log][3:] == [f"/v2/aggs/ticker/NVDA/range/1/day/{start_ms}/{end_ms}"]
    # 300 s later (faked here) the trial call goes through, succeeds and closes the circuit...
    healthy["on"] = True
    fake_clock.advance(301)
    assert client.fetch_asset_info(provider_symbol="NVDA").name == "NVIDIA Corporation"
    assert CircuitState.objects.get(provider="YAHOO_FINANCE").state == "closed"
    # ...which the other process sees at once.
    (second,) = run_workers(("ok", {"provider": "YAHOO_FINANCE", "symbol": "NVDA", "calls": 2}))
    assert second["outcomes"] == ["ok", "ok"]


@pytest.mark.django_db
def test_an_open_circuit_falls_back_to_the_next_provider_by_priority(providers, httpserver, client_options):
    for _ in range(3):
        circuit.circuit_record_failure("BINANCE", error="down")
    httpserver.expect_request("/v8/finance/chart/BTC-USD").respond_with_json(
        payloads.yahoo_chart("BTC-USD", start=payloads.T0, bars=2, step=timedelta(hours=1), instrument="CRYPTOCURRENCY")
    )
    btc = Symbol.objects.create(
        ticker="BTCUSDT", market=Market.objects.get(code="BINANCE"), base_currency="BTC", quote_currency="USDT"
    )
    code, candles = candles_fetch_with_fallback(
        provider_symbols={"BINANCE": btc.ticker, "YAHOO_FINANCE": "BTC-USD"},
        timeframe="1h",
        start=payloads.T0,
        end=payloads.T0 + timedelta(hours=1),
        client_options=client_options,
    )
    assert code == "YAHOO_FINANCE" and len(candles) == 2
    assert all("/fapi/" not in r.path for r, _ in httpserver.log)  # Binance (priority 10) was never called


@pytest.mark.django_db
def test_fallback_names_every_failure_when_all_fail(providers, httpserver, client_options):
    httpserver.expect_request("/v8/finance/chart/AAPL").respond_with_data("x", status=500)
    httpserver.expect_request("/v3/reference/tickers/AAPL").respond_with_data("x", status=500)
    with pytest.raises(ProviderError) as err:
        call_with_fallback(
            codes=["YAHOO_FINANCE", "POLYGON"],
            client_options=client_options,
            fn=lambda c: c.fetch_asset_info(provider_symbol="AAPL"),
        )
    assert "YAHOO_FINANCE:" in err.value.message and "POLYGON:" in err.value.message


def _settings_in_a_fresh_process(**environment: str) -> dict:
    """The ENRICHMENT_* settings as a new process reads them from these environment variables."""
    script = (
        "import json, django; django.setup(); from django.conf import settings;"
        " print(json.dumps({k: getattr(settings, k) for k in dir(settings) if k.startswith('ENRICHMENT_')}))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mytrader.settings", **environment}
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", script],
        env=env,
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        check=True,
    )
    return {"values": json.loads(done.stdout.strip().splitlines()[-1]), "stderr": done.stderr}


@pytest.mark.slow
def test_circuit_settings_can_come_from_the_environment():
    read = _settings_in_a_fresh_process(
        ENRICHMENT_CIRCUIT_FAILURE_THRESHOLD="1", ENRICHMENT_CIRCUIT_RECOVERY_SECONDS="lots"
    )
    assert read["values"]["ENRICHMENT_CIRCUIT_FAILURE_THRESHOLD"] == 1
    # A value that is not a number is ignored with a warning: the default stays.
    assert read["values"]["ENRICHMENT_CIRCUIT_RECOVERY_SECONDS"] == 300.0
    assert "ignoring ENRICHMENT_CIRCUIT_RECOVERY_SECONDS='lots'" in read["stderr"]
    assert read["values"]["ENRICHMENT_MAX_ATTEMPTS"] == 3
