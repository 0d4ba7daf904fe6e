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
