"""Fixtures for the etl tests: reference data and candles made in code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from django.db import connection

from etl import locks, pipeline
from etl.models import MarketData


@pytest.fixture
def make_candles():
    """make_candles([(ticker, market), ...], bars=3): daily candles, unlinked."""

    def make(pairs, *, bars: int = 3, start: datetime = datetime(2024, 1, 2, tzinfo=UTC), asset_class=None):
        rows = [
            MarketData(
                ticker=ticker,
                market=market,
                timeframe="1d",
                ts=start + timedelta(days=i),
                open=Decimal("10"),
                high=Decimal("12"),
                low=Decimal("9"),
                close=Decimal("11"),
                volume=Decimal("1000"),
                asset_class=asset_class,
            )
            for ticker, market in pairs
            for i in range(bars)
        ]
        MarketData.objects.bulk_create(rows)
        return rows

    return make


@pytest.fixture
def pipeline_locked(db):
    """Another session holds the pipeline's advisory lock (a run in progress elsewhere)."""

    # The backend's own parameters, so this also works against the embedded server.
    params = connection.get_connection_params()
    other = psycopg.connect(**{k: v for k, v in params.items() if k in ("host", "port", "user", "password", "dbname")})
    other.execute("SELECT pg_advisory_lock(%s, %s)", locks.PIPELINE.key())
    yield other
    other.close()


@pytest.fixture
def registry(monkeypatch):
    """A copy of the step registry that a test may add to; restored afterwards."""

    monkeypatch.setattr(pipeline, "_REGISTRY", dict(pipeline._REGISTRY))
    return pipeline


@pytest.fixture
def etl_steps_only(registry):
    """Only the steps etl registers itself, whatever other apps are installed."""
    for name in [n for n in registry._REGISTRY if n not in ("bootstrap", "sync", "validate")]:
        del registry._REGISTRY[name]
    return registry
