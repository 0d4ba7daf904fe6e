from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from etl.models import DataCorrection, Market, PipelineRun, Symbol

pytestmark = pytest.mark.django_db


def run(*args):
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_sync_symbols_dry_run_lists_then_real_run_json(reference_data, make_candles):
    make_candles([("BTCUSDT", "BINANCE"), ("THYAO.IS", "BIST")])
    out, _ = run("sync_symbols", "--dry-run")
    assert "would create 2 symbol(s)" in out
    assert "THYAO" in out and "STOCK_BIST" in out and "BTC/USDT" in out
    assert Symbol.objects.count() == 0
    out, _ = run("sync_symbols", "--json", "--venue", "BINANCE")
    summary = json.loads(out)
    assert (summary["ok"], summary["symbols_created"], summary["filtered_out"]) == (True, 1, 1)


def test_run_pipeline_prints_progress_per_step_and_records(reference_data, make_candles):
    make_candles([("AAPL", "NASDAQ")], asset_class="STOCK_NASDAQ")
    out, _ = run("run_pipeline", "--steps", "sync,validate", "--max-minutes", "5")
    assert "[sync] running" in out
    assert "[sync] succeeded" in out
    assert "[validate] succeeded" in out
    assert "pipeline run #" in out
    run_ = PipelineRun.objects.get()
    assert (run_.trigger, run_.max_seconds, run_.steps_requested) == ("command", 300, ["sync", "validate"])


def test_run_pipeline_json_keeps_stdout_clean_and_fails_nonzero(registry, reference_data):
    def boom(*, options, progress=None):
        raise ValueError("bad row")

    registry.register_step("correct", order=40, run=boom)
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError):
        call_command(
            "run_pipeline", "--json", "--steps", "correct", "sync", "--continue-on-failure", stdout=out, stderr=err
        )
    summary = json.loads(out.getvalue())
    assert summary["ok"] is False
    assert [s["status"] for s in summary["steps"]] == ["succeeded", "failed"]
    assert "[correct] failed" in err.getvalue()


def test_run_pipeline_refuses_unknown_step_and_bad_option(reference_data):
    with pytest.raises(CommandError, match="unknown pipeline step"):
        run("run_pipeline", "--steps", "teleport")
    with pytest.raises(CommandError, match="KEY=VALUE"):
        run("run_pipeline", "--option", "nonsense")


def test_integrity_status_and_clean_symbols_commands(reference_data, make_candles):
    make_candles([("GARAN", "BIST")])
    Symbol.objects.create(ticker="garan", market=Market.objects.get(code="BIST"))
    out, _ = run("integrity_status")
    assert "data integrity: attention" in out
    assert "BIST" in out and "ALL" in out
    status = json.loads(run("integrity_status", "--json")[0])
    assert status["overall"]["candles_without_symbol"] == 3
    out, _ = run("clean_symbols")
    assert "case_variant: 1 found, 0 fixed" in out
    out, _ = run("clean_symbols", "--fix", "--only", "case_variant", "unlinked_candles")
    assert "case_variant: 1 found, 1 fixed" in out
    assert Symbol.objects.get(market__code="BIST").ticker == "GARAN"
    assert DataCorrection.objects.filter(created_by="command").count() == 2
