"""Fixtures the three sub-domains' tests share: reference data whose providers point at
a local pytest-httpserver on 127.0.0.1, fake API keys, fast retry settings."""

from __future__ import annotations

import pytest

from etl.models import DataProvider

API_KEYS = {
    "YAHOO_FINANCE": "",
    "BINANCE": "",
    "COINMARKETCAP": "cmc-secret-key-123",
    "ALPHA_VANTAGE": "av-secret-key-456",
    "POLYGON": "poly-secret-key-789",
}


@pytest.fixture(scope="session")
def httpserver_listen_address():
    return ("127.0.0.1", 0)


class FakeSleep:
    """Records the waits instead of sleeping."""

    def __init__(self):
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def fake_sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def providers(reference_data, httpserver, settings):
    """Every provider enabled, keyed and pointing at the local server (fast password hashing
    and AXES_ENABLED=False come from the root conftest's autouse fixture)."""
    settings.PROVIDER_API_KEYS = dict(API_KEYS)
    DataProvider.objects.update(base_url=httpserver.url_for("").rstrip("/"), is_enabled=True, timeout_seconds=2.0)
    return {p.code: p for p in DataProvider.objects.all()}


@pytest.fixture
def client_options(fake_sleep) -> dict:
    """Fast retries: three attempts, millisecond backoff, no real sleeping."""
    return {"max_attempts": 3, "backoff_base": 0.001, "backoff_max": 0.01, "sleep": fake_sleep}
