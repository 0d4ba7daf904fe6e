"""The completeness indicator the `min_data_completeness` quality gate reads."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from enrichment.candles.models import DataQualityMetric
from enrichment.candles.selectors import data_completeness
from etl import services
from etl.models import Market, PipelineRun, Symbol
from etl.services import integrity

pytestmark = pytest.mark.django_db


@pytest.fixture
def nvda(reference_data):
    return Symbol.objects.create(ticker="NVDA", market=Market.objects.get(code="NASDAQ"))


def day_rows(symbol, rows):
    """rows: (expected_bars, completeness) per day, oldest first."""
    start = date(2024, 1, 1)
    DataQualityMetric.objects.bulk_create(
        DataQualityMetric(
            symbol=symbol,
            timeframe="1h",
            day=start + timedelta(days=i),
            expected_bars=expected,
            actual_bars=round(expected * (completeness or 0)),
            completeness=completeness,
        )
        for i, (expected, completeness) in enumerate(rows)
    )


def test_nothing_measured_is_none():
    assert data_completeness() is None


def test_weighted_by_expected_bars_over_the_latest_days_in_one_query(nvda):
    # A day without expected bars (a holiday) or without a measure weighs nothing.
    day_rows(nvda, [(7, 0.0), (7, 1.0), (21, 0.5), (0, None), (7, None)])
    with CaptureQueriesContext(connection) as queries:
        assert data_completeness() == round((7 * 0.0 + 7 * 1.0 + 21 * 0.5) / 35, 4)
    assert len(queries) == 1
    # Only the latest measured days count: the first day falls out of a window of two
    # (the two unmeasured days after it do not move the window).
    assert data_completeness(days=2) == round((7 * 1.0 + 21 * 0.5) / 28, 4)


def test_enrichment_registers_it_and_the_gate_names_its_value(nvda, settings):
    assert integrity._INDICATORS["data_completeness"] is data_completeness
    settings.MIN_DATA_COMPLETENESS = 0.95
    day_rows(nvda, [(10, 0.8), (10, 0.9)])
    result = services.pipeline_run(steps=["validate"])
    gates = {g["name"]: g for g in PipelineRun.objects.get(pk=result.run_id).summary["gates"]}
    completeness = gates["min_data_completeness"]
    assert (completeness["value"], completeness["threshold"], completeness["breached"]) == (0.85, 0.95, True)
    assert result.outcome == "succeeded with warnings"
