"""A correction and its rollback keep the integrity summaries exact; the metrics
endpoint reads the categories from them instead of analysing market_data."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from corrections import services
from corrections.selectors import asset_class_analysis, category_totals

pytestmark = pytest.mark.django_db


def test_execute_and_rollback_keep_the_summaries_exact(world, assert_summaries_exact):
    assert_summaries_exact()
    assert asdict(category_totals()) == asdict(asset_class_analysis(sample_size=0).totals)
    run = services.correction_run_create(requested_by="alice", overwrite_mismatched=True, batch_size=9)
    services.correction_execute(run=run)
    assert_summaries_exact()
    assert asdict(category_totals()) == asdict(asset_class_analysis(sample_size=0).totals)
    assert services.correction_metrics()["records_needing_correction"] == 0

    services.correction_rollback(run=run, reason="wrong source", requested_by="alice")
    assert_summaries_exact()
    analysis = asset_class_analysis(sample_size=0)
    metrics = services.correction_metrics()
    assert asdict(category_totals()) == asdict(analysis.totals)
    assert (metrics["data_quality_score"], metrics["records_needing_correction"], metrics["orphan_percent"]) == (
        analysis.quality_score,
        analysis.totals.needing_correction,
        analysis.orphan_percent,
    )
    assert metrics["candles"] == analysis.totals.total
