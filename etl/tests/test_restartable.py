"""The restartable server the fault tests share (etl/tests/restartable.py, root conftest)."""

from __future__ import annotations

import getpass
from pathlib import Path
from types import SimpleNamespace

import pytest

from etl.tests import restartable

pytestmark = [pytest.mark.slow, pytest.mark.embedded]


def test_a_restart_survives_another_pytest_making_its_temp_root_private(restartable_server, monkeypatch):
    # Any pytest starting on this machine (a nested run, another worker or checkout) takes the group
    # and other bits off /tmp/pytest-of-<user>; one that does so while the server is down must not
    # keep the server's own user (as root: embedded_postgres) away from its data folder.
    temp_root = Path(f"/tmp/pytest-of-{getpass.getuser()}")
    if not temp_root.is_dir():
        pytest.skip(f"no {temp_root}")
    mode = temp_root.stat().st_mode
    # The pause while the server is down (RestartableServer.restart) is when that pytest starts.
    monkeypatch.setattr(restartable, "time", SimpleNamespace(sleep=lambda seconds: temp_root.chmod(mode & ~0o077)))
    try:
        restartable_server.restart(down_seconds=0)
    finally:
        temp_root.chmod(mode)
    assert restartable_server.query("postgres", "SELECT 1") == (1,)
