"""The real app for tests, started the way `make serve` starts it: a
`runserver --noreload` on a free 127.0.0.1 port (or, with `web_workers`, gunicorn
as in production) and a `qcluster` worker, both child processes on the test
database (conftest.child_database_url), with the ORM broker and a DATA_ROOT of
the test's choosing. Their output goes to log files the failing test can show."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from conftest import child_database_url

PROJECT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 60.0
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def web_command(port: int, web_workers: int) -> list[str]:
    """runserver, as `make serve`; or gunicorn as the README's production command, with `web_workers`
    processes. Gunicorn's own request-line and header limits are lifted: past them it answers 414/400
    in HTML before the app sees the request (docs/api.md says so), and a test of the app wants the app's
    answer (the input guard's 400 in the API's shape)."""
    if not web_workers:
        return ["runserver", "--noreload", f"127.0.0.1:{port}"]
    return [
        "gunicorn",
        "mytrader.wsgi:application",
        f"--workers={web_workers}",
        "--timeout=360",
        f"--bind=127.0.0.1:{port}",
        "--limit-request-line=0",
        "--limit-request-field_size=0",
    ]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def child_env(*, data_root: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process: the test database, DATA_ROOT, the ORM
    broker (no REDIS_URL), development settings."""
    env = {
        **os.environ,
        "DATABASE_URL": child_database_url(),
        "DATA_ROOT": str(data_root),
        "DEBUG": "on",
        "LOG_LEVEL": "INFO",
        "Q_WORKERS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("REDIS_URL", None)
    env.update(extra or {})
    return env


@dataclass(frozen=True, slots=True)
class LiveApp:
    base_url: str  # http://127.0.0.1:<port>, no trailing slash
    server_log: Path
    worker_log: Path

    def logs(self, tail: int = 4000) -> str:
        """The end of both logs, for a failure message."""
        parts = []
        for log in (self.server_log, self.worker_log):
            text = log.read_text(errors="replace") if log.exists() else ""
            parts.append(f"--- {log.name} ---\n{text[-tail:]}")
        return "\n".join(parts)


def _spawn(args: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen:
    command = [sys.executable, "manage.py", *args] if args[0] != "gunicorn" else [GUNICORN, *args[1:]]
    with open(log, "ab") as out:
        return subprocess.Popen(
            command,
            cwd=PROJECT,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopping it stops its children
        )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _wait_until_serving(app: LiveApp, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}\n{app.logs()}")
        try:
            requests.get(f"{app.base_url}/api/etl/health", timeout=10)
            return
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or its first answer is slow
            time.sleep(0.3)
    raise RuntimeError(f"the server did not answer within {START_TIMEOUT:.0f} s\n{app.logs()}")


@contextmanager
def live_app(
    *, data_root: Path, log_dir: Path, env: Mapping[str, str] | None = None, web_workers: int = 0
) -> Iterator[LiveApp]:
    """A running web server and worker on the test database; both stopped on exit."""
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    environment = child_env(data_root=data_root, extra=env)
    app = LiveApp(f"http://127.0.0.1:{port}", log_dir / "runserver.log", log_dir / "qcluster.log")
    server = _spawn(web_command(port, web_workers), environment, app.server_log)
    worker = _spawn(["qcluster"], environment, app.worker_log)
    try:
        _wait_until_serving(app, server)
        yield app
    finally:
        _stop(server)
        _stop(worker)
