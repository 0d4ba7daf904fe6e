from __future__ import annotations

import pytest

from corrections import services
from corrections.models import CorrectionRun, Phase, Scope
from corrections.selectors import correction_preview_page
from corrections.tests.conftest import add_candles, add_symbol, market_data_checksum
from etl.errors import DomainError

pytestmark = pytest.mark.django_db


def test_analyze_counts_every_category(world):
    report = services.correction_analyze(sample_size=3)
    totals = report.to_dict()["totals"]
    assert totals == {
        "total": 100,
        "null": 28,
        "empty": 7,
        "mismatched": 40,
        "correct": 15,
        "orphan": 6,
        "unclassified": 4,
        "needing_correction": 75,
    }
    assert report.quality_score == 15.0
    assert report.orphan_percent == 6.0
    assert not any("more than 10" in w for w in report.warnings)
    assert any("without an asset class" in w for w in report.warnings)


def test_analyze_breaks_down_by_market_and_asset_class(world):
    report = services.correction_analyze().to_dict()
    bist = next(r for r in report["by_market"] if r["market"] == "BIST")
    assert (bist["total"], bist["mismatched"], bist["null"], bist["empty"]) == (57, 30, 20, 7)
    folder_bist = next(r for r in report["by_asset_class"] if r["asset_class"] == "BIST")
    assert (folder_bist["total"], folder_bist["mismatched"]) == (30, 30)
    nulls = next(r for r in report["by_asset_class"] if r["asset_class"] is None)
    assert (nulls["null"], nulls["unclassified"]) == (28, 4)
    expected = next(r for r in report["by_expected_class"] if r["expected_class"] == "STOCK_BIST")
    assert expected["total"] == 57
    assert [s["ticker"] for s in report["samples"]["orphan"]] == ["ETH"] * 5
    assert report["samples"]["mismatched"][0]["expected"] == "STOCK_BIST"


def test_analyze_warns_when_orphans_exceed_ten_percent(world):
    add_candles(ticker="SOL", market="BINANCE", value=None, n=20, symbol=None)
    report = services.correction_analyze()
    assert report.totals.orphan == 26
    assert any("more than 10 %" in w for w in report.warnings)


def test_analyze_of_an_empty_table_is_all_zero(reference_data):
    report = services.correction_analyze()
    assert report.totals.total == 0 and report.quality_score == 100.0 and report.warnings == []


def test_run_create_records_options_and_analysis(world):
    run = services.correction_run_create(requested_by="alice", overwrite_mismatched=True, batch_size=10)
    assert run.phase == Phase.ANALYZED and run.scope == Scope.ALL
    assert run.analyze_report["totals"]["needing_correction"] == 75


@pytest.mark.parametrize(
    ("scope", "rows", "groups"),
    [(Scope.NULL, 28, 2), (Scope.MISSING, 35, 4), (Scope.ALL, 75, 6)],
)
def test_preview_groups_exact_changes_per_scope(world, scope, rows, groups):
    page = correction_preview_page(scope=scope, page_size=100)
    assert (page.total_rows, page.total_groups, len(page.groups)) == (rows, groups, groups)
    assert sum(g["row_count"] for g in page.groups) == rows


def test_preview_lists_ticker_market_from_to_and_pages(world):
    first = correction_preview_page(scope=Scope.ALL, page=1, page_size=4)
    second = correction_preview_page(scope=Scope.ALL, page=2, page_size=4)
    assert first.pages == 2 and len(first.groups) == 4 and len(second.groups) == 2
    everything = {
        (g["ticker"], g["market"], g["from_value"], g["to_value"]): g["row_count"] for g in first.groups + second.groups
    }
    assert everything == {
        ("BTC", "BINANCE", None, "CRYPTO"): 8,
        ("GARAN", "BIST", None, "STOCK_BIST"): 20,
        ("GARAN", "BIST", "", "STOCK_BIST"): 5,
        ("GARAN", "BIST", "  ", "STOCK_BIST"): 2,
        ("THYAO", "BIST", "BIST", "STOCK_BIST"): 30,
        ("AAPL", "NASDAQ", "NASDAQ", "STOCK_NASDAQ"): 10,
    }
    assert {(t["from_value"], t["to_value"]): t["rows"] for t in first.transitions}[("BIST", "STOCK_BIST")] == 30


def test_preview_writes_no_candle_and_marks_the_run_previewed(world):
    before = market_data_checksum()
    run = services.correction_run_create(requested_by="alice")
    page = services.correction_preview(run=run, page_size=2)
    assert market_data_checksum() == before
    run.refresh_from_db()
    assert run.phase == Phase.PREVIEWED
    assert run.preview_report["total_rows"] == page.total_rows == 35
    assert CorrectionRun.objects.count() == 1


def test_preview_refuses_bad_paging(world):
    with pytest.raises(DomainError, match="page_size"):
        correction_preview_page(scope=Scope.ALL, page_size=0)


def test_only_null_and_overwrite_exclude_each_other(world):
    with pytest.raises(DomainError, match="exclude each other"):
        services.correction_run_create(requested_by="x", only_null=True, overwrite_mismatched=True)


def test_a_symbol_added_later_turns_an_orphan_into_a_candidate(world):
    eth = add_symbol("ETH2", "BINANCE", "CRYPTO")
    add_candles(ticker="ETH2", market="BINANCE", value="CRYPTO", n=3, symbol=eth)
    assert services.correction_analyze().totals.correct == 18
