"""Every curl example of the old guides (api_fuzz/old_guides_curl.txt), as
written, against the real app: a web server and a worker on the test database
(api_fuzz/live_server.py), providers served from 127.0.0.1 in their vendors'
shapes. Each example must succeed and do the work it describes; the check
named on its header line reads the database (and the response fields the
guides tell operators to read) to see that it did.

The examples run once, in the file's order, in one module fixture (one server
start); each has its own test reporting what went wrong. Two more tests send
what the request policy is about: an unknown field (400 naming it) and an old
option accepted but not acted on (2xx, listed under `ignored_options`).
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import override_settings
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from api_fuzz.live_server import LiveApp, live_app
from batchimport import samples
from batchimport import services as import_services
from batchimport.models import ImportJob
from corrections.models import CorrectionRun, Phase
from enrichment.models import AssetEnrichmentRun
from enrichment.providers.tests import payloads
from etl.models import AssetClass, DataProvider, Market, MarketData, PipelineRun, RunStatus, Symbol, TradingSession
from etl.services import reference_data_bootstrap
from etl.services.tokens import api_token_issue

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CURL_FILE = Path(__file__).with_name("old_guides_curl.txt")
GUIDE_HOSTS = ("https://api.mytrader.com", "http://localhost:5000")
DOTS_BASE = "/api/etl"  # the guide's ".../sync-symbols" shorthand
SCRAPER_PLACEHOLDER = "/path/to/Stock_Scrapper/DATA"
OPERATION_PLACEHOLDER = "your-operation-id-here"
OPERATOR_MARKET_NAME = "Borsa Istanbul (edited by an operator)"
WAIT_SECONDS = 180.0
API_KEYS = {"COINMARKETCAP_API_KEY": "cmc-key-for-the-live-test"}


@dataclass(frozen=True, slots=True)
class Example:
    number: str
    source: str  # guide file:line
    check: str
    does: str
    text: str  # the curl command as the guide has it

    @property
    def label(self) -> str:
        return f"{self.number}-{self.check}"


def examples_load(path: Path = CURL_FILE) -> list[Example]:
    """The examples of the curl file: a `## n | file:line | check` line, a `# does:` line, the curl text."""
    examples = []
    for block in re.split(r"^(?=## )", path.read_text(encoding="utf-8"), flags=re.MULTILINE):
        if not block.startswith("## "):
            continue
        head, does, *body = block.rstrip("\n").split("\n")
        number, source, check = (part.strip() for part in head[3:].split("|"))
        examples.append(Example(number, source, check, does.removeprefix("# does:").strip(), "\n".join(body)))
    return examples


EXAMPLES = examples_load()


@dataclass(frozen=True, slots=True)
class CurlCall:
    method: str
    url: str
    headers: dict[str, str]
    data: str | None


def curl_parse(text: str, *, base_url: str, token: str, substitutions: dict[str, str]) -> CurlCall:
    """What curl would send for `text`, with the guide's placeholders filled in
    (see the curl file's header): host, token, ids, paths."""
    for placeholder, value in substitutions.items():
        text = text.replace(placeholder, value)
    words = shlex.split(text.replace("\\\n", " "))
    assert words[0] == "curl", text
    method, url, headers, data = None, None, {}, None
    rest = iter(words[1:])
    for word in rest:
        if word in ("-X", "--request"):
            method = next(rest)
        elif word in ("-H", "--header"):
            name, _, value = next(rest).partition(":")
            headers[name.strip()] = value.strip()
        elif word in ("-d", "--data", "--data-raw"):
            data = next(rest)
        else:
            url = word
    for host in GUIDE_HOSTS:
        url = url.replace(host, base_url)
    if url.startswith("..."):
        url = base_url + DOTS_BASE + url[3:]
    elif url.startswith("/"):
        url = base_url + url
    headers = {k: re.sub(r"^Bearer (YOUR_)?TOKEN$", f"Bearer {token}", v) for k, v in headers.items()}
    headers.setdefault("Authorization", f"Bearer {token}")  # the one-liners leave it out
    if data is not None:
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")  # curl's default for -d
    return CurlCall(method or ("POST" if data is not None else "GET"), url, headers, data)


@dataclass(frozen=True, slots=True)
class Outcome:
    label: str
    call: str
    status: int | None
    problems: tuple[str, ...]
    body: str

    def report(self) -> str:
        lines = [f"{self.label}: {self.call} -> HTTP {self.status}", *(f"  - {p}" for p in self.problems)]
        return "\n".join([*lines, f"  body: {self.body[:1500]}"])


@dataclass
class GuideState:
    """What the examples share while they run, in order."""

    app: LiveApp
    token: str
    data_root: Path
    nulled_ids: list[int] = field(default_factory=list)
    correction_run_id: int | None = None
    symbols_before: int = 0


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _old_names_missing(body: Any, names: dict[str, Callable[[Any], bool] | None]) -> list[str]:
    """Problems for each old response name the guides tell operators to read that is
    missing from the top level of the body, or whose value fails its test."""
    if not isinstance(body, dict):
        return [f"the body is not a JSON object, so {', '.join(names)} cannot be read"]
    problems = []
    for name, test in names.items():
        if name not in body:
            problems.append(f"the guides' scripts read `{name}`: not in the response")
        elif test is not None and not test(body[name]):
            problems.append(f"`{name}` is {body[name]!r}, which the guide's success criterion refuses")
    return problems


def _ok_status(response: requests.Response, *allowed: int) -> list[str]:
    allowed = allowed or (200, 201, 202)
    return [] if response.status_code in allowed else [f"HTTP {response.status_code}, expected one of {allowed}"]


def _body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def check_reference_data(state: GuideState, response, body) -> list[str]:
    problems = _ok_status(response, 200, 202)
    if response.status_code == 202 and "Location" in response.headers:
        _finished_status(state, response)  # as a script polls before its next step
    markets = set(Market.objects.values_list("code", flat=True))
    if not {"BINANCE", "BIST", "NASDAQ", "NYSE", "FOREX_MARKET"} <= markets:
        problems.append(f"markets are {sorted(markets)}")
    if AssetClass.objects.count() < 9 or DataProvider.objects.count() < 5 or not TradingSession.objects.exists():
        problems.append("asset classes, data providers or trading sessions are missing")
    return problems


def check_reference_data_kept(state: GuideState, response, body) -> list[str]:
    problems = check_reference_data(state, response, body)
    name = Market.objects.get(code="BIST").name
    if name != OPERATOR_MARKET_NAME:
        problems.append(f"overwriteExisting=false, yet the operator's market name was overwritten ({name!r})")
    return problems


def _finished_status(state: GuideState, response: requests.Response) -> Any:
    """A 202's run as its Location reports it once finished (what a script polls)."""
    headers = {"Authorization": f"Bearer {state.token}"}
    seen: dict[str, Any] = {}

    def finished() -> bool:
        seen["body"] = requests.get(response.headers["Location"], headers=headers, timeout=30).json()
        return seen["body"].get("finished_at") is not None

    wait_for(finished, "the queued run")
    return seen["body"]


def check_symbols_synced(state: GuideState, response, body) -> list[str]:
    problems = _ok_status(response, 200, 202)
    problems += _sync_options_accounted(_example_body(response), body)
    status = body
    if response.status_code == 202:
        if "Location" not in response.headers:
            return [*problems, "a 202 without a Location header for the run's status"]
        status = _finished_status(state, response)
    orphans = MarketData.objects.filter(symbol__isnull=True).count()
    if orphans:
        problems.append(f"{orphans} market_data rows still have no symbol")
    added = Symbol.objects.count() - state.symbols_before
    state.symbols_before = Symbol.objects.count()
    criteria = {
        "MarketDataRecordsWithoutSymbols": lambda v: v == 0,
        "Success": lambda v: v is True,
        "SymbolsAdded": lambda v: v == added,
    }
    return problems + _old_names_missing(status, criteria)


SYNC_OPTIONS = {"batchSize", "assetClassFilter", "venueFilter", "skipExistingSymbols", "maxProcessingTime"}
ENRICH_OPTIONS = {  # old name -> (what the run records, how the old value reads there)
    "enabledSources": ("sources", lambda value: sorted(value)),
    "maxConcurrency": ("concurrency", lambda value: value),
    "overwriteExistingData": ("overwrite", lambda value: value),
    "rateLimitDelay": ("rate_limit_delay", lambda value: 1.0 if value == "00:00:01" else value),
}


def _ignored(body: Any) -> dict[str, str]:
    return (body.get("ignored_options") or {}) if isinstance(body, dict) else {}


def _sync_options_accounted(sent: dict[str, Any], body: Any) -> list[str]:
    """Every option the example sends is used (the batch size shows in the answer)
    or listed under ignored_options: none dropped without a word."""
    problems = []
    if "batchSize" in sent and (not isinstance(body, dict) or body.get("batch_size") != sent["batchSize"]):
        problems.append(f"batchSize {sent['batchSize']} sent: the answer does not show it was used (batch_size)")
    for key in set(sent) - SYNC_OPTIONS - set(_ignored(body)):
        problems.append(f"{key} sent: neither acted on nor listed under ignored_options")
    return problems


def _enrich_options_accounted(sent: dict[str, Any], body: Any, run: AssetEnrichmentRun) -> list[str]:
    problems = []
    for key, value in sent.items():
        if key in ENRICH_OPTIONS:
            name, expected = ENRICH_OPTIONS[key]
            recorded = run.options.get(name)
            recorded = sorted(recorded) if name == "sources" and recorded else recorded
            if recorded != expected(value):
                problems.append(f"{key}={value!r} sent: the run recorded {name}={run.options.get(name)!r}")
        elif key not in _ignored(body):
            problems.append(f"{key} sent: neither acted on nor listed under ignored_options")
    return problems


def _enrichment_run(body: Any) -> AssetEnrichmentRun | None:
    run_id = body.get("run_id") or body.get("id") if isinstance(body, dict) else None
    return AssetEnrichmentRun.objects.filter(pk=run_id).first() if run_id else None


def check_assets_enriched(state: GuideState, response, body) -> list[str]:
    problems = _ok_status(response, 200, 202)
    run = _enrichment_run(body)
    if run is None:
        return [*problems, "no enrichment run id in the response"]
    wait_for(lambda: AssetEnrichmentRun.objects.get(pk=run.pk).finished_at is not None, "the enrichment run")
    run.refresh_from_db()
    if run.status != RunStatus.SUCCEEDED:
        problems.append(f"the enrichment run ended {run.status}: {run.error}")
    if run.symbols_total and (run.enriched + run.partial) < 0.8 * run.symbols_total:
        problems.append(f"only {run.enriched + run.partial} of {run.symbols_total} symbols enriched (guide: > 80%)")
    if not Symbol.objects.filter(enriched_at__isnull=False).exists():
        problems.append("no symbol has been enriched")
    problems += _enrich_options_accounted(_example_body(response), body, run)
    if response.status_code == 200:
        problems += _old_names_missing(body, {"SuccessfullyEnriched": None, "PartiallyEnriched": None})
    return problems


def check_status_report(state: GuideState, response, body) -> list[str]:
    names = ("OverallDataQuality", "SymbolCoverage", "EnrichmentCoverage", "MarketDataRecordsWithoutSymbols")
    return _ok_status(response, 200) + _old_names_missing(body, dict.fromkeys(names))


def check_pipeline_recorded(state: GuideState, response, body) -> list[str]:
    problems = _ok_status(response, 200, 202)
    run_id = (body.get("run_id") or body.get("id")) if isinstance(body, dict) else None
    run = PipelineRun.objects.filter(pk=run_id).first() if run_id else PipelineRun.objects.order_by("-id").first()
    if run is None:
        return [*problems, "no pipeline run recorded"]
    wait_for(lambda: PipelineRun.objects.get(pk=run.pk).finished_at is not None, "the pipeline run")
    run.refresh_from_db()
    steps = list(run.step_runs.values_list("name", flat=True))
    if not {"sync", "enrich", "validate"} <= set(steps) or "bootstrap" in steps:
        problems.append(f"the run's steps are {steps}: expected sync, enrich, validate and no bootstrap")
    if not run.continue_on_failure:
        problems.append("continueOnComponentFailure=true was not recorded on the run")
    if "maxExecutionTime" in _example_body(response) and run.max_seconds != 7200:
        problems.append(f"maxExecutionTime 02:00:00 recorded as {run.max_seconds} s")
    if run.status != RunStatus.SUCCEEDED:
        problems.append(f"the run ended {run.status}: {run.error or run.summary}")
    return problems


def _example_body(response: requests.Response) -> dict[str, Any]:
    try:
        return json.loads(response.request.body or b"{}")
    except ValueError:
        return {}


def correction_prepare(state: GuideState) -> None:
    """The old system's bug the correction repairs: these candles lost their asset class."""
    MarketData.objects.filter(pk__in=state.nulled_ids).update(asset_class=None)


def check_correction_executed(state: GuideState, response, body) -> list[str]:
    problems = _ok_status(response, 200, 202)
    run_id = next((body.get(k) for k in ("run_id", "correctionId", "id") if isinstance(body, dict) and k in body), None)
    run = CorrectionRun.objects.filter(pk=run_id).first() if run_id else None
    if run is None:
        return [*problems, "no correction run id in the response"]
    state.correction_run_id = run.pk
    done = (Phase.EXECUTED, Phase.VALIDATED)
    wait_for(
        lambda: (
            CorrectionRun.objects.get(pk=run.pk).phase in done
            or CorrectionRun.objects.get(pk=run.pk).status == RunStatus.FAILED
        ),
        "the correction run",
    )
    run.refresh_from_db()
    if run.phase not in done:
        problems.append(f"the run is {run.phase}/{run.status}: {run.error}")
    if (run.batch_size, run.only_null, run.validate_each_batch) != (1000, True, True):
        problems.append(
            f"options recorded as batch_size={run.batch_size}, only_null={run.only_null}, "
            f"validate_each_batch={run.validate_each_batch}"
        )
    left = MarketData.objects.filter(pk__in=state.nulled_ids, asset_class__isnull=True).count()
    if left or not run.backups.exists():
        backups = run.backups.count()
        problems.append(f"{left} of {len(state.nulled_ids)} NULL asset classes left; backup rows: {backups}")
    return problems


def check_correction_rolled_back(state: GuideState, response, body) -> list[str]:
    problems = _ok_status(response, 200, 202)
    run = CorrectionRun.objects.filter(pk=state.correction_run_id).first()
    if run is None:
        return [*problems, "example 06 left no correction run to roll back"]
    # The rollback is queued (202): wait until it has run, or failed.
    wait_for(
        lambda: (
            CorrectionRun.objects.get(pk=run.pk).phase == Phase.ROLLED_BACK
            or CorrectionRun.objects.get(pk=run.pk).status == RunStatus.FAILED
        ),
        "the rollback",
    )
    run.refresh_from_db()
    if run.phase != Phase.ROLLED_BACK:
        problems.append(f"the run is {run.phase}, not rolled back")
    restored = MarketData.objects.filter(pk__in=state.nulled_ids, asset_class__isnull=True).count()
    if restored != len(state.nulled_ids):
        problems.append(f"{restored} of {len(state.nulled_ids)} rows back to their NULL asset class")
    return problems


def check_analysis_report(state: GuideState, response, body) -> list[str]:
    problems = _ok_status(response, 200)
    totals = body.get("totals") if isinstance(body, dict) else None
    if not isinstance(totals, dict) or not isinstance(totals.get("needing_correction"), int):
        problems.append("the analysis does not count the records needing correction")
    return problems


def check_reference_validation(state: GuideState, response, body) -> list[str]:
    problems = _ok_status(response, 200)
    if not isinstance(body, dict) or body.get("ok") is not True:
        problems.append("the reference data did not validate")
    return problems


def check_bootstrap_status(state: GuideState, response, body) -> list[str]:
    problems = _ok_status(response, 200)
    return problems + ([] if isinstance(body, dict) and body else ["an empty bootstrap status"])


def check_sources_status(state: GuideState, response, body) -> list[str]:
    problems = _ok_status(response, 200)
    text = json.dumps(body)
    return problems + ([] if "YAHOO_FINANCE" in text else ["YAHOO_FINANCE is not in the sources' status"])


def check_symbols_validated(state: GuideState, response, body) -> list[str]:
    return _ok_status(response, 200)


def check_import_stored(state: GuideState, response, body) -> list[str]:
    problems = _ok_status(response, 202)
    problems += _old_names_missing(body, {"jobId": None})
    job_id = body.get("jobId") or body.get("job_id") or body.get("id") if isinstance(body, dict) else None
    job = ImportJob.objects.filter(pk=job_id).first() if job_id else None
    if job is None:
        return [*problems, "no import job recorded"]
    finished = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)
    wait_for(lambda: ImportJob.objects.get(pk=job.pk).status in finished, "the import job")
    job.refresh_from_db()
    if job.status != RunStatus.SUCCEEDED or job.kind != ImportJob.Kind.ALL_MARKETS:
        problems.append(f"the {job.kind} job ended {job.status}: {job.error}")
    if not job.rows_inserted or not job.counts_add_up:
        problems.append(f"rows read {job.rows_read}, inserted {job.rows_inserted}: nothing stored or counts off")
    return problems


CHECKS: dict[str, Callable[[GuideState, requests.Response, Any], list[str]]] = {
    name.removeprefix("check_"): fn for name, fn in globals().items() if name.startswith("check_")
}
PREPARE: dict[str, Callable[[GuideState], None]] = {"correction_executed": correction_prepare}


def example_run(state: GuideState, example: Example) -> Outcome:
    substitutions = {
        SCRAPER_PLACEHOLDER: str(state.data_root / "Stock_Scrapper" / "DATA"),
        OPERATION_PLACEHOLDER: str(state.correction_run_id or 0),
    }
    call = curl_parse(example.text, base_url=state.app.base_url, token=state.token, substitutions=substitutions)
    summary = f"{call.method} {call.url.removeprefix(state.app.base_url)}"
    if example.check in PREPARE:
        PREPARE[example.check](state)
    try:
        response = requests.request(call.method, call.url, headers=call.headers, data=call.data, timeout=600)
    except requests.RequestException as exc:
        return Outcome(example.label, summary, None, (f"no answer: {exc}",), "")
    body = _body(response)
    try:
        problems = CHECKS[example.check](state, response, body)
    except Exception as exc:  # noqa: BLE001 - one broken check must not hide the other examples' results
        problems = [f"{type(exc).__name__}: {exc}"]
    return Outcome(example.label, summary, response.status_code, tuple(problems), response.text)


def policy_run(state: GuideState) -> dict[str, Outcome]:
    """The two requests "done" is measured by: an unknown field, and an old option accepted but not acted on."""
    headers = {"Authorization": f"Bearer {state.token}", "Content-Type": "application/json"}
    url = f"{state.app.base_url}/api/etl/execute-full-pipeline"
    unknown = requests.post(url, headers=headers, data=json.dumps({"executeSymbolSinc": True}), timeout=600)
    body = _body(unknown) or {}
    problems = [] if unknown.status_code == 400 else [f"HTTP {unknown.status_code}, expected 400"]
    if body.get("code") != "unknown_field" or "executeSymbolSinc" not in json.dumps(body.get("errors")):
        problems.append("the 400 does not name the unknown field executeSymbolSinc with code unknown_field")
    label = "policy-unknown-field"
    outcomes = {label: Outcome(label, "POST execute-full-pipeline", unknown.status_code, tuple(problems), unknown.text)}
    sent = {"executeSymbolSync": True, "executeAssetEnrichment": False, "executeInParallel": False}
    ignored = requests.post(url, headers=headers, data=json.dumps(sent), timeout=600)
    body = _body(ignored) or {}
    problems = [] if 200 <= ignored.status_code < 300 else [f"HTTP {ignored.status_code}, expected 2xx"]
    if "executeInParallel" not in (body.get("ignored_options") or {}):
        problems.append("executeInParallel is not listed under ignored_options")
    run = PipelineRun.objects.order_by("-id").first()
    if run is None or "executeInParallel" not in (run.options or {}).get("ignored_options", {}):
        problems.append("the run record does not keep ignored_options")
    label = "policy-ignored-option"
    outcomes[label] = Outcome(label, "POST execute-full-pipeline", ignored.status_code, tuple(problems), ignored.text)
    return outcomes


def _provider_answer(request: Request) -> Response:
    path = request.path
    if path.startswith("/v8/finance/chart/"):
        symbol = path.rsplit("/", 1)[1]
        chart = payloads.yahoo_chart(symbol, start=datetime(2024, 1, 2, tzinfo=UTC), bars=5, long_name=f"{symbol} Inc.")
        return Response(json.dumps(chart), content_type="application/json")
    if path == "/v1/test/getcrumb":
        return Response(payloads.YAHOO_CRUMB, content_type="text/plain")
    if path == "/v7/finance/quote":
        symbols = [s for s in request.args.get("symbols", "").split(",") if s]
        rows = [payloads.yahoo_quote_row(symbol, long_name=f"{symbol} Inc.") for symbol in symbols]
        return Response(json.dumps(payloads.yahoo_quote(rows)), content_type="application/json")
    if path == "/v1/cryptocurrency/info":
        symbols = [s for s in request.args.get("symbol", "BTC").split(",") if s]
        data = {s: payloads.cmc_info(s, s.title())["data"][s] for s in symbols}
        return Response(json.dumps({"status": {"error_code": 0}, "data": data}), content_type="application/json")
    return Response(json.dumps({"error": "not served here"}), status=404, content_type="application/json")


@contextmanager
def fake_providers() -> Iterator[str]:
    """Yahoo Finance (v8 chart, v7 quote and its crumb) and CoinMarketCap (v1 info) on 127.0.0.1,
    in their vendors' shapes."""
    server = HTTPServer(host="127.0.0.1", port=0)
    server.expect_request(re.compile(".*")).respond_with_handler(_provider_answer)
    server.start()
    try:
        yield server.url_for("").rstrip("/")
    finally:
        server.clear()
        server.stop()


@dataclass(frozen=True, slots=True)
class Prepared:
    token: str
    nulled_ids: list[int]


@dataclass(frozen=True, slots=True)
class GuideRun:
    outcomes: dict[str, Outcome]
    logs: str  # the server's and the worker's

    def report(self, label: str) -> str:
        outcome = self.outcomes[label]
        broken = outcome.status is None or outcome.status >= 500
        return outcome.report() + (f"\n{self.logs}" if broken else "")


def guide_data_prepare(data_root: Path, providers_url: str) -> Prepared:
    """What the guides assume exists: reference data (edited by an operator),
    providers at the local server, candles imported but not yet synced, the
    scraper's DATA folder for the import example, a staff user with a token."""
    reference_data_bootstrap()
    Market.objects.filter(code="BIST").update(name=OPERATOR_MARKET_NAME)
    DataProvider.objects.update(base_url=providers_url, timeout_seconds=2.0)
    DataProvider.objects.filter(code__in=["BINANCE", "POLYGON", "ALPHA_VANTAGE"]).update(is_enabled=False)
    DataProvider.objects.filter(code="COINMARKETCAP").update(is_enabled=True)
    samples.write_sample_folder(data_root / "preload", seed=3, tickers=2, days=20, defect_every=25)
    samples.write_sample_folder(data_root / "Stock_Scrapper" / "DATA", seed=9, tickers=3, days=20, defect_every=25)
    import_services.import_job_start(job=import_services.import_job_create(path="preload"))
    nulled = list(MarketData.objects.filter(ticker__in=samples.NASDAQ_TICKERS[:2]).values_list("id", flat=True))
    get_user_model().objects.create_user(username="guide-operator", is_staff=True, is_superuser=True)
    token = api_token_issue(username="guide-operator", name="old guides", issued_by="test").key
    return Prepared(token=token, nulled_ids=nulled)


@pytest.fixture(scope="module")
def guide_run(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[GuideRun]:
    root = tmp_path_factory.mktemp("old-guides")
    data_root = root / "data"
    data_root.mkdir()
    outcomes: dict[str, Outcome] = {}
    with django_db_blocker.unblock(), override_settings(DATA_ROOT=data_root), fake_providers() as providers_url:
        prepared = guide_data_prepare(data_root, providers_url)
        with live_app(data_root=data_root, log_dir=root / "logs", env=API_KEYS) as app:
            state = GuideState(
                app=app,
                token=prepared.token,
                data_root=data_root,
                nulled_ids=prepared.nulled_ids,
                symbols_before=Symbol.objects.count(),
            )
            for example in EXAMPLES:
                outcomes[example.label] = example_run(state, example)
            outcomes.update(policy_run(state))
            logs = app.logs()
    for outcome in outcomes.values():
        print(outcome.report())  # shown with -s, and on failure
    yield GuideRun(outcomes=outcomes, logs=logs)
    with django_db_blocker.unblock():
        call_command("flush", interactive=False, verbosity=0)


def test_the_curl_file_lists_every_example_of_the_guides():
    assert len(EXAMPLES) == 23
    assert [e.number for e in EXAMPLES] == [f"{n:02d}" for n in range(1, 24)]
    assert {e.check for e in EXAMPLES} <= set(CHECKS)
    seeds = Path("/work/shared/seeds")
    if seeds.is_dir():  # the guides themselves are not part of the repository
        written = sum(len(re.findall(r"^\s*curl ", p.read_text(), flags=re.MULTILINE)) for p in seeds.glob("*.txt"))
        assert written == len(EXAMPLES)
        for example in EXAMPLES:
            guide, line = example.source.split(":")
            first = (seeds / guide).read_text(encoding="utf-8").split("\n")[int(line) - 1]
            assert first == example.text.split("\n")[0], example.label


@pytest.mark.parametrize("label", [e.label for e in EXAMPLES])
def test_old_guide_example_succeeds_and_does_its_work(guide_run, label):
    assert not guide_run.outcomes[label].problems, guide_run.report(label)


@pytest.mark.parametrize("label", ["policy-unknown-field", "policy-ignored-option"])
def test_request_policy_on_the_live_server(guide_run, label):
    assert not guide_run.outcomes[label].problems, guide_run.report(label)
