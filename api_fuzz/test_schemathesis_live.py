"""Schemathesis over HTTP against the running app, as staff (issue 12's done-means).

The app runs as in production: gunicorn (two workers) and a qcluster worker on the test
database (api_fuzz/live_server.py), with reference data, imported candles, runs of every
kind, a dead letter and a provider mapping to work on. Schemathesis reads the schema the
server publishes (/api/schema/) and sends, for every operation, up to MAX_EXAMPLES
generated requests (valid and invalid ones), then stateful scenarios that follow the
schema's OpenAPI links: a run created by a POST is fetched, cancelled, retried, rolled
back; a schedule created is read, run now and deleted (mytrader/api_schema.py).

Every answer is checked: no 500; its status code, content type and headers documented
for the operation; its body valid against the documented schema; a resource created is
there to read and a deleted one is gone. The run's JUnit report is kept under the test's
temporary folder and its failures are printed when the test fails.

Wall time: see docs/api.md ("Schemathesis over HTTP"), measured with this test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from api_fuzz.live_server import LiveApp, live_app
from batchimport import samples
from batchimport import services as import_services
from enrichment.assets.services.enrich import assets_enrich
from enrichment.assets.services.enrich_options import OFFLINE_SOURCES, EnrichOptions
from enrichment.assets.services.mapping import mappings_ensure
from enrichment.candles.services.backfill import backfill_plan
from etl import services as etl_services
from etl.models import DataProvider, Symbol
from etl.services.tokens import api_token_issue

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db(transaction=True)]

MAX_EXAMPLES = 100
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "use_after_free",
    "ensure_resource_availability",
)
PHASES = "examples,fuzzing,stateful"
RUN_TIMEOUT = 1500  # seconds: a hang fails the test instead of holding `make test`
ST = str(Path(sys.executable).with_name("st"))
CONFIG = Path(__file__).with_name("schemathesis.toml")  # the stateful phase: valid requests, longer scenarios
RUN_PATHS = ("/api/runs/", "/api/batch-processing/jobs/", "/api/etl/enrichment-runs/", "/api/etl/execution-history/")


@dataclass(frozen=True, slots=True)
class Live:
    app: LiveApp
    token: str
    folder: Path


def fuzz_data_prepare(data_root: Path) -> str:
    """Something for every operation to work on; returns a staff user's token. Remote providers are
    off (there is no internet here): enrichment reads the offline catalogues."""
    etl_services.reference_data_bootstrap()
    DataProvider.objects.update(is_enabled=False, base_url="http://127.0.0.1:9", timeout_seconds=1.0)
    samples.write_sample_folder(data_root / "DATA", seed=5, tickers=2, days=30, defect_every=20)
    samples.write_sample_folder(data_root, seed=6, tickers=1, days=10, defect_every=0)  # the markets' own folders
    (data_root / "DATA" / "NYSE" / "BROKEN.csv").write_text("not,a,candle\n\x00\x01\n")  # a dead letter
    import_services.import_job_start(job=import_services.import_job_create(path="DATA", max_attempts=1))
    etl_services.pipeline_run(steps=["sync", "correct", "features", "validate"], trigger="api", requested_by="fuzz")
    assets_enrich(options=EnrichOptions(selection="all", sources=OFFLINE_SOURCES), requested_by="fuzz")
    mappings_ensure()
    symbol = Symbol.objects.filter(market__code="BINANCE").first() or Symbol.objects.first()
    backfill_plan(
        symbol=symbol,
        timeframe="1d",
        source="market_data",
        start=timezone.now() - timedelta(days=20),
        end=timezone.now(),
    )
    get_user_model().objects.create_user(username="fuzzer", is_staff=True, is_superuser=True)
    return api_token_issue(username="fuzzer", name="schemathesis", issued_by="test").key


@pytest.fixture(scope="module")
def live(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("schemathesis-live")
    data_root = folder / "data"
    data_root.mkdir()
    env = {"LOG_LEVEL": "WARNING", "Q_WORKERS": "1"}
    try:
        with django_db_blocker.unblock(), override_settings(DATA_ROOT=data_root):
            token = fuzz_data_prepare(data_root)
            with live_app(data_root=data_root, log_dir=folder / "logs", env=env, web_workers=2) as app:
                yield Live(app=app, token=token, folder=folder)
    finally:  # committed rows: the tests after this one start from an empty database
        with django_db_blocker.unblock():
            call_command("flush", interactive=False, verbosity=0)


def st_run(live: Live, schema_file: Path) -> subprocess.CompletedProcess:
    report = live.folder / "report"
    command = [
        ST,
        f"--config-file={CONFIG}",
        "run",
        str(schema_file),
        f"--url={live.app.base_url}",
        f"--header=Authorization: Token {live.token}",
        f"--max-examples={MAX_EXAMPLES}",
        f"--phases={PHASES}",
        f"--checks={','.join(CHECKS)}",
        "--seed=12",
        "--generation-database=none",
        "--workers=2",
        "--request-timeout=120",
        "--no-color",
        "--report=junit,ndjson",
        f"--report-dir={report}",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env, cwd=live.folder)


@dataclass(frozen=True, slots=True)
class Followed:
    """A link the stateful phase followed: from an answer of one operation to a call of another."""

    source: str  # "POST /api/etl/enrich-assets"
    source_status: int
    target: str  # "POST /api/runs/asset-enrichment/{id}/retry/"
    target_status: int


def links_followed(report: Path) -> list[Followed]:
    """Every link the stateful scenarios followed, from schemathesis' NDJSON report."""
    followed = []
    for path in report.glob("ndjson-*.ndjson"):
        for line in path.read_text().splitlines():
            event = json.loads(line).get("ScenarioFinished")
            if not event:
                continue
            cases, calls = event["recorder"].get("cases", {}), event["recorder"].get("interactions", {})

            def step(case_id: str, cases=cases, calls=calls) -> tuple[str, int]:
                case = cases[case_id]["value"]
                status = (calls.get(case_id, {}).get("response") or {}).get("status_code") or 0
                return f"{case['method']} {case['path']}", status

            for case_id, node in cases.items():
                transition = node.get("transition")
                if transition and transition.get("parent_id") in cases:
                    source, source_status = step(transition["parent_id"])
                    target, target_status = step(case_id)
                    followed.append(Followed(source, source_status, target, target_status))
    return followed


def created_runs_followed(followed: list[Followed]) -> dict[str, set[str]]:
    """For runs a POST created (202), what was then done to them: read, cancel, retry, rollback."""
    done: dict[str, set[str]] = {}
    for link in followed:
        if not (link.source.startswith("POST ") and link.source_status == 202):
            continue
        if not any(part in link.target for part in RUN_PATHS) or link.target_status >= 500:
            continue
        method, path = link.target.split(" ", 1)
        verb = "read" if method == "GET" else path.rstrip("/").rsplit("/", 1)[-1]
        done.setdefault(link.source, set()).add(verb)
    return done


def test_every_operation_over_http_with_stateful_links(live):
    headers = {"Authorization": f"Token {live.token}"}
    schema = requests.get(f"{live.app.base_url}/api/schema/?format=json", headers=headers, timeout=60)
    assert schema.status_code == 200, schema.text[:500]
    document = schema.json()
    linked = sum(
        "links" in r for p in document["paths"].values() for op in p.values() for r in op["responses"].values()
    )
    assert linked >= 20, "the schema's OpenAPI links between the operations on a run are missing"
    schema_file = live.folder / "schema.json"
    schema_file.write_text(json.dumps(document))

    started = time.monotonic()
    result = st_run(live, schema_file)
    seconds = time.monotonic() - started
    print(f"schemathesis over HTTP: {seconds:.0f} s\n{result.stdout[-6000:]}")
    assert result.returncode == 0, f"{result.stdout[-20000:]}\n{result.stderr[-3000:]}\n{live.app.logs()}"
    # The stateful phase did what it is here for: runs that POSTs created were then read, and
    # cancelled or retried, through the schema's links.
    done = created_runs_followed(links_followed(live.folder / "report"))
    print("runs created by a POST, then:", {source: sorted(verbs) for source, verbs in done.items()})
    # Which links a scenario draws depends on the answers (a run may be finished before its cancel
    # arrives), so no single verb is certain to be drawn: ask for two kinds of follow-up, one of
    # them an action on the run.
    followed_verbs = set().union(*done.values()) if done else set()
    assert len(followed_verbs) >= 2, done
    assert followed_verbs & {"cancel", "retry", "rollback"}, done
