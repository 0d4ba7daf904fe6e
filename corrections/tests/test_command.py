from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from corrections import tasks
from corrections.models import CorrectionRun, Phase
from corrections.tests.conftest import market_data_checksum
from etl.models import MarketData

pytestmark = pytest.mark.django_db


def run_json(*args: str) -> dict:
    out = StringIO()
    call_command("correct_asset_classes", *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_analyze_records_a_run_and_prints_counts(world):
    body = run_json("analyze", "--overwrite-mismatched", "--samples", "1")
    run = CorrectionRun.objects.get(pk=body["run_id"])
    assert body["ok"] and body["totals"]["needing_correction"] == 75
    assert run.phase == Phase.ANALYZED and run.overwrite_mismatched
    human = StringIO()
    call_command("correct_asset_classes", "analyze", stdout=human)
    assert "needing_correction" in human.getvalue() and "BIST" in human.getvalue()


def test_preview_without_a_run_writes_nothing(world):
    before = market_data_checksum()
    body = run_json("preview", "--only-null", "--page-size", "1")
    assert (body["scope"], body["total_rows"], body["pages"]) == ("null", 28, 2)
    human = StringIO()
    call_command("correct_asset_classes", "preview", "--overwrite-mismatched", stdout=human)
    assert "'BIST' -> STOCK_BIST" in human.getvalue()
    assert market_data_checksum() == before and not CorrectionRun.objects.exists()


def test_execute_validate_rollback_round_trip(world):
    before = market_data_checksum()
    executed = run_json("execute", "--overwrite-mismatched", "--batch-size", "7")
    assert (executed["rows_updated"], executed["status"]) == (75, "succeeded")
    run_id = str(executed["run_id"])
    assert run_json("validate", "--run", run_id)["ok"] is True
    assert run_json("status", "--run", run_id)["phase"] == "validated"
    rolled = run_json("rollback", "--run", run_id, "--reason", "round trip")
    assert rolled["rows_restored"] == 75 and market_data_checksum() == before
    with pytest.raises(CommandError, match="already rolled back") as err:
        call_command("correct_asset_classes", "rollback", "--run", run_id, "--reason", "again", stdout=StringIO())
    assert err.value.returncode == 3


def test_execute_resumes_a_given_run(world):
    run = CorrectionRun.objects.create(requested_by="x", overwrite_mismatched=True, batch_size=10)
    body = run_json("execute", "--run", str(run.pk))
    assert body["run_id"] == run.pk and body["rows_updated"] == 75


def test_bad_input_exits_non_zero_with_a_message(world):
    run = CorrectionRun.objects.create(requested_by="x")
    with pytest.raises(CommandError, match="needs a reason"):
        call_command("correct_asset_classes", "rollback", "--run", str(run.pk), stdout=StringIO())
    with pytest.raises(CommandError, match="never executed"):
        call_command("correct_asset_classes", "rollback", "--run", str(run.pk), "--reason", "r", stdout=StringIO())
    with pytest.raises(CommandError, match="no correction run 999999"):
        call_command("correct_asset_classes", "validate", "--run", "999999", stdout=StringIO())
    with pytest.raises(CommandError, match="exclude each other"):
        call_command("correct_asset_classes", "execute", "--only-null", "--overwrite-mismatched", stdout=StringIO())
    with pytest.raises(CommandError, match="batch_size"):
        call_command("correct_asset_classes", "execute", "--batch-size", "0", stdout=StringIO())
    assert MarketData.objects.filter(asset_class="STOCK_BIST").count() == 0


def test_validate_failure_exits_non_zero(world):
    executed = run_json("execute")
    MarketData.objects.filter(ticker="GARAN").update(asset_class=None)
    with pytest.raises(CommandError, match="validation failed"):
        call_command("correct_asset_classes", "validate", "--run", str(executed["run_id"]), stdout=StringIO())


def test_scheduled_task_runs_a_whole_pass(world):
    summary = tasks.correct_scheduled(overwrite_mismatched=True)
    assert summary["rows_updated"] == 75 and summary["validated"] is True
    assert CorrectionRun.objects.get(pk=summary["run_id"]).requested_by == "schedule"
    rolled = tasks.correction_rollback(summary["run_id"], "undo", "ops")
    assert rolled["rows_restored"] == 75
