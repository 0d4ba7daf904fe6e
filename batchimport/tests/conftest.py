from __future__ import annotations

from pathlib import Path

import pytest

from batchimport import samples


@pytest.fixture
def data_root(tmp_path, settings) -> Path:
    """DATA_ROOT pointed at a fresh folder for the test."""
    root = tmp_path / "data"
    root.mkdir()
    settings.DATA_ROOT = root
    return root


@pytest.fixture
def sample_folder(data_root) -> samples.SampleSummary:
    """A small generated scraper folder with every layout and known defects."""
    return samples.write_sample_folder(data_root / "DATA", seed=7, tickers=4, days=40, defect_every=15)


@pytest.fixture
def wide_dates(settings, monkeypatch) -> None:
    """Plausible dates from 1800 and two centuries ahead, here and in child processes:
    for generated series of 100,000+ daily bars, which run past today."""
    settings.IMPORT_EARLIEST_DATE = "1800-01-01"
    settings.IMPORT_DAYS_AHEAD = 365 * 300
    monkeypatch.setenv("IMPORT_EARLIEST_DATE", "1800-01-01")
    monkeypatch.setenv("IMPORT_DAYS_AHEAD", str(365 * 300))
