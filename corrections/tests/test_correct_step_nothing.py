"""The pipeline's correct step when there is nothing to correct: it says so from the integrity
summaries without a run or a scan, and a wrong class written by any writer is still corrected."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from corrections import services
from corrections.models import CorrectionRun
from corrections.tests.conftest import add_candles, add_symbol
from etl.models import AssetClass, MarketData, Symbol
from etl.services.symbols import symbols_sync

pytestmark = pytest.mark.django_db


@pytest.fixture
def clean(reference_data) -> dict[str, Symbol]:
    thyao = add_symbol("THYAO", "BIST", "STOCK_BIST")
    aapl = add_symbol("AAPL", "NASDAQ", "STOCK_NASDAQ")
    add_candles(ticker="THYAO", market="BIST", value="STOCK_BIST", n=12, symbol=thyao)
    add_candles(ticker="AAPL", market="NASDAQ", value="STOCK_NASDAQ", n=8, symbol=aapl)
    add_candles(ticker="ETH", market="BINANCE", value="CRYPTO", n=3, symbol=None)  # orphan: not correctable
    return {"THYAO": thyao, "AAPL": aapl}


def test_nothing_to_correct_is_said_without_a_run_or_a_read_of_market_data(clean):
    with CaptureQueriesContext(connection) as queries:
        result = services.correct_step(options={})
    assert result["status"] == "skipped" and result["run_id"] is None and result["rows_updated"] == 0
    assert result["candles_to_correct"] == 0 and result["quality_score"] == round(100 * 20 / 23, 2)
    assert not CorrectionRun.objects.exists()
    assert not [q["sql"] for q in queries.captured_queries if "market_data" in q["sql"]]


def _import_writes_a_folder_name(symbols):
    add_candles(ticker="THYAO", market="BIST", value="BIST", n=4, symbol=symbols["THYAO"])
    return 4


def _symbol_changes_class(symbols):
    Symbol.objects.filter(pk=symbols["AAPL"].pk).update(asset_class=AssetClass.objects.get(code="CRYPTO"))
    return 8


def _sync_links_an_orphan(symbols):
    add_candles(ticker="GARAN", market="BIST", value="BIST", n=5, symbol=None)
    add_symbol("GARAN", "BIST", "STOCK_BIST")
    symbols_sync()
    assert not MarketData.objects.filter(ticker="GARAN", symbol__isnull=True).exists()
    return 5


def _hand_written_update(symbols):
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE market_data SET asset_class = NULL WHERE ticker = 'THYAO' AND ts IN "
            "(SELECT ts FROM market_data WHERE ticker = 'THYAO' ORDER BY ts LIMIT 3)"
        )
    return 3


def _class_code_renamed(symbols):
    AssetClass.objects.filter(code="STOCK_NASDAQ").update(code="STOCK_NASDAQ_US")
    return 8


@pytest.mark.parametrize(
    "writer",
    [
        _import_writes_a_folder_name,
        _symbol_changes_class,
        _sync_links_an_orphan,
        _hand_written_update,
        _class_code_renamed,
    ],
)
def test_a_wrong_class_from_any_writer_is_found_and_corrected(clean, writer):
    assert services.correct_step(options={})["status"] == "skipped"
    wrong = writer(clean)
    result = services.correct_step(options={})
    assert (result["status"], result["rows_updated"], result["validated"]) == ("succeeded", wrong, True)
    assert services.correct_step(options={})["status"] == "skipped"
