"""What `make test` does on a machine without the system commands some tests need."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_browser_tests_are_left_out_with_one_line_when_chromium_is_missing():
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "browser_tests"],
        cwd=ROOT,
        env={**os.environ, "CHROMIUM_PATH": ""},
        capture_output=True,
        text=True,
    )
    lines = [line for line in done.stdout.splitlines() if "Chromium not found" in line]
    assert len(lines) == 1, done.stdout
    assert re.fullmatch(r"SKIPPED \d+ browser tests: Chromium not found: install Debian's chromium package.*", lines[0])
    assert "error" not in done.stdout.lower()
    assert done.returncode == 5  # pytest's "no tests ran": every test of the folder was left out


def test_the_left_out_line_survives_parallel_workers():
    # Under pytest-xdist (as `make test` runs) the workers collect and the controller prints:
    # the line must still appear, once, not once per worker.
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "browser_tests"],
        cwd=ROOT,
        env={**os.environ, "CHROMIUM_PATH": ""},
        capture_output=True,
        text=True,
    )
    lines = [line for line in done.stdout.splitlines() if "Chromium not found" in line]
    assert len(lines) == 1, done.stdout
    assert re.fullmatch(r"SKIPPED \d+ browser tests: Chromium not found: .*", lines[0])
