"""Every door that shows the integrity numbers — the status endpoints, the dashboard,
health, /metrics and the `integrity_status` command — reads the summaries: the same few
queries at any size, none of which scans a big table. A query may touch a big table only
by an index-bounded read: one hour or one day of a log, a LIMIT, or rows by primary key."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from enrichment.candles.services.feature_runs import features_run
from enrichment.candles.tests.feature_fixtures import insert_market_data, make_symbol, random_candles
from etl import services, summaries
from etl.models import MarketData

pytestmark = pytest.mark.django_db

BIG = (
    "market_data",
    "market_data_v2",
    "symbols",
    "data_quality_metrics",
    "enrichment_status",
    "enrichment_fetch_log",
    "enrichment_compute_log",
    "backfill_state",
)
TOUCHES = re.compile(r'\b(?:FROM|JOIN|UPDATE|INTO)\s+"?(' + "|".join(BIG) + r')"?(?:\s|$|,|\))', re.IGNORECASE)
BOUNDED = (
    re.compile(r"\bLIMIT\s+\d+", re.IGNORECASE),  # newest rows along an index
    re.compile(r'"(created_at|enriched_at)" >= .* AND .*"\1" < ', re.IGNORECASE),  # one hour or one day
    re.compile(r'"id" IN \(', re.IGNORECASE),  # rows by primary key
    re.compile(r"\bFROM\s+live_series\b", re.IGNORECASE),  # live series: the few polled symbols
)
DOORS = (
    "/api/etl/status",
    "/api/etl/symbol-sync-status",
    "/api/etl/enrichment-status",
    "/api/v1/enrichment/metrics",
    "/api/etl/asset-class-correction/metrics",
    "/api/etl/health",
    "/metrics",
    "/admin/",
)
MOST_QUERIES = 80


def grow(symbols: int, *, first: int = 0) -> None:
    """`symbols` more series of 120 candles, imported unlinked, synced, their features computed."""
    for i in range(first, first + symbols):
        symbol = make_symbol(f"C{i}", "BINANCE", "CRYPTO")
        insert_market_data(symbol, random_candles(120, seed=i))
    MarketData.objects.update(symbol=None)
    services.symbols_sync()
    features_run()


def scans(queries) -> list[str]:
    return [q["sql"] for q in queries if TOUCHES.search(q["sql"]) and not any(p.search(q["sql"]) for p in BOUNDED)]


def queries_of(client, url: str) -> list[dict]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200, (url, response.content[:300])
    return queries.captured_queries


def test_each_door_reads_the_same_few_rows_at_any_size_and_scans_no_big_table(
    reference_data, admin_client, monkeypatch
):
    monkeypatch.setattr(summaries, "READ_FOLD_SECONDS", 0)  # every read folds: the same queries each time
    grow(1)
    for url in DOORS:
        admin_client.get(url, REMOTE_ADDR="127.0.0.1")  # the first request's one-off work (signing probe, session)
    small = {url: queries_of(admin_client, url) for url in DOORS}
    grow(6, first=1)  # seven times the symbols, candles and series
    large = {url: queries_of(admin_client, url) for url in DOORS}
    for url in DOORS:
        assert scans(small[url]) == [] and scans(large[url]) == [], url
        assert len(large[url]) == len(small[url]) <= MOST_QUERIES, (url, len(small[url]), len(large[url]))


def test_the_integrity_status_command_reads_the_summaries(reference_data):
    grow(2)
    with CaptureQueriesContext(connection) as queries:
        call_command("integrity_status", "--json", stdout=StringIO())
    assert scans(queries.captured_queries) == []
    assert len(queries.captured_queries) <= 8


def test_a_scan_is_caught():
    """The check itself can fail: the old status query is a scan."""
    old = "SELECT count(*) FROM market_data md LEFT JOIN symbols s ON s.id = md.symbol_id"
    assert scans([{"sql": old}]) == [old]
