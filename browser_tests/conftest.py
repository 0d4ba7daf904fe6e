"""Real-browser tests: Playwright driving Debian's Chromium against a live server.

Playwright cannot download its own browser here, so the tests use the system
Chromium: `make test` installs Debian's `chromium` package when it is missing
and it may; without it these tests are skipped with one line saying so.
`CHROMIUM_PATH` names the browser (empty: none). Screenshots go to
`artifacts/screenshots/`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

_LEFT_OUT = pytest.StashKey[int]()
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
CHROMIUM = os.environ["CHROMIUM_PATH"] if "CHROMIUM_PATH" in os.environ else shutil.which("chromium") or ""
HERE = Path(__file__).resolve().parent
NO_CHROMIUM = "Chromium not found: install Debian's chromium package (or set CHROMIUM_PATH)"


def _chromium_missing() -> bool:
    return not CHROMIUM or not os.access(CHROMIUM, os.X_OK)


def pytest_collection_modifyitems(config, items):
    # Without a browser these tests are left out with one line in the summary
    # (a skip inside a fixture would print one line per test file).
    if not _chromium_missing():
        return
    left_out = [item for item in items if HERE in item.path.parents]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item not in left_out]
        config.stash[_LEFT_OUT] = len(left_out)
        if hasattr(config, "workeroutput"):  # a pytest-xdist worker: the controller prints it (root conftest)
            config.workeroutput.setdefault("summary_lines", []).append(_left_out_line(len(left_out)))


def _left_out_line(count: int) -> str:
    return f"SKIPPED {count} browser tests: {NO_CHROMIUM}"


def pytest_terminal_summary(terminalreporter, config):
    if config.stash.get(_LEFT_OUT, 0) and not hasattr(config, "workeroutput"):
        terminalreporter.write_line(_left_out_line(config.stash[_LEFT_OUT]), yellow=True)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the
    # tests make around it are still plain synchronous calls. Set only while
    # browser tests run, so no other test inherits it.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def _on_console(page, msg) -> None:
    if msg.type != "error":
        return
    where = (msg.location or {}).get("url") or ""
    # a 404's console line does not name the URL: add where it came from
    page.console_errors.append(f"{msg.text} [{where}]" if where else msg.text)


def _on_response(page, response) -> None:
    if response.status >= 400:
        page.console_errors.append(f"HTTP {response.status} {response.url}")


@pytest.fixture
def page(browser):
    """A fresh browser page; `page.console_errors` collects console errors, uncaught
    exceptions (CSP violations among them) and HTTP responses >= 400."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda msg: _on_console(page, msg))
    page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
    page.on("response", lambda r: _on_response(page, r))
    yield page
    context.close()


@pytest.fixture
def shot():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser("operator", "ops@example.com", "operator-password")


@pytest.fixture
def logged_in(page, live_server, operator):
    """A page logged into the admin through the real login form."""
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "operator-password")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    return page


@pytest.fixture
def data_root(settings, tmp_path) -> Path:
    """settings.DATA_ROOT in a fresh folder (imports may only read below it)."""
    root = tmp_path / "data"
    root.mkdir()
    settings.DATA_ROOT = str(root)
    return root


@pytest.fixture
def sync_queue(monkeypatch):
    """Queued django-q2 tasks run at once, in the process (and thread) that queues
    them: the live server's thread for work started from the admin."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def sample_folder(data_root, sync_queue) -> dict:
    """Reference data and a small generated scraper folder, `DATA_ROOT/sample`
    (2 files per market, 60 daily bars each), built by the product's commands."""
    import json
    from io import StringIO

    from django.core.management import call_command

    call_command("bootstrap_reference_data", stdout=StringIO())
    out = StringIO()
    call_command(
        "generate_sample_data", str(data_root / "sample"), "--tickers", "2", "--days", "60", "--json", stdout=out
    )
    return json.loads(out.getvalue())


@pytest.fixture
def pipeline_data(sample_folder, data_root) -> dict:
    """The sample folder run through the whole pipeline (import, sync, enrich with
    the remote providers unreachable, features, validate), as `make demo` does."""
    import json
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command(
        "run_pipeline",
        "--continue-on-failure",
        "--path",
        str(data_root / "sample"),
        "--json",
        stdout=out,
        stderr=StringIO(),
    )
    return json.loads(out.getvalue())
