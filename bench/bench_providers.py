"""Overhead of the provider machinery per HTTP call.

The same N calls to a local server: plain `requests.Session.get` + `.json()`,
against `ProviderClient.get_json` (circuit check, shared rate limit grant,
fetch-log row, retry wrapper). Run: `python bench/bench_providers.py [N]`.
Uses the configured database; its rows are written under provider code BENCH
and deleted afterwards."""

from __future__ import annotations

import logging
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mytrader.settings")

import django  # noqa: E402

django.setup()

import requests  # noqa: E402
from pytest_httpserver import HTTPServer  # noqa: E402

from enrichment.models import CircuitState, FetchLog, RateLimitGrant  # noqa: E402
from enrichment.providers.yahoo import YahooClient  # noqa: E402
from etl.models import DataProvider  # noqa: E402


class BenchClient(YahooClient):
    code = "BENCH"


def main(n: int) -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = HTTPServer(host="127.0.0.1", port=0)
    server.expect_request("/v8/finance/chart/NVDA").respond_with_json(
        {"chart": {"result": [{"meta": {"currency": "USD", "longName": "NVIDIA Corporation"}}], "error": None}}
    )
    server.start()
    try:
        url = server.url_for("/v8/finance/chart/NVDA")
        session = requests.Session()
        session.get(url).json()
        t0 = time.perf_counter()
        for _ in range(n):
            session.get(url, timeout=(3, 10)).json()
        plain = time.perf_counter() - t0

        provider = DataProvider(
            code="BENCH", name="bench", base_url=server.url_for("").rstrip("/"), rate_limit_per_minute=10_000_000
        )
        client = BenchClient(provider)
        t0 = time.perf_counter()
        for _ in range(n):
            client.get_json("/v8/finance/chart/NVDA", endpoint="chart", symbol="NVDA")
        ours = time.perf_counter() - t0
        logged = FetchLog.objects.filter(provider="BENCH").count()
    finally:
        server.stop()
        FetchLog.objects.filter(provider="BENCH").delete()
        RateLimitGrant.objects.filter(provider="BENCH").delete()
        CircuitState.objects.filter(provider="BENCH").delete()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"calls: {n} (fetch-log rows written: {logged})")
    print(f"plain requests     : {n / plain:8.0f} calls/s  {1000 * plain / n:6.2f} ms/call")
    print(f"ProviderClient     : {n / ours:8.0f} calls/s  {1000 * ours / n:6.2f} ms/call")
    print(f"ratio ours/plain   : {ours / plain:6.2f}x   overhead {1000 * (ours - plain) / n:.2f} ms/call")
    print(f"peak RSS           : {peak_mb:.0f} MB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
