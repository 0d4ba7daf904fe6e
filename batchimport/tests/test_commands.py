"""The commands: generate_sample_data and import_market_data (--json, errors, re-run)."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from batchimport.models import ImportJob, RejectedRow
from etl.models import MarketData

pytestmark = pytest.mark.django_db


def call(*args) -> dict:
    out = StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_generate_then_import_then_reimport(data_root):
    generated = call(
        "generate_sample_data",
        str(data_root / "sample"),
        "--seed",
        "3",
        "--tickers",
        "3",
        "--days",
        "30",
        "--defect-every",
        "10",
    )
    # 30 bars a file, each tenth one followed by a broken copy (bars 10, 20, 30: three a file).
    assert generated["files"] == 12 and generated["defective_rows"] == 36 and generated["rows"] == 360 + 36
    first = call("import_market_data", "sample", "--batch-size", "7")
    assert first["ok"] and first["status"] == "succeeded"
    assert first["rows_read"] == 396 and first["rows_rejected"] == generated["defective_rows"]
    assert first["rows_inserted"] == 360 and first["rows_inserted"] + first["rows_rejected"] == 396
    assert MarketData.objects.count() == first["rows_inserted"]
    assert RejectedRow.objects.count() == first["rows_rejected"]
    second = call("import_market_data", "sample")
    assert second["rows_inserted"] == 0 and second["files_skipped"] == 12


def test_import_one_market_folder_with_the_market_option(data_root):
    call("generate_sample_data", str(data_root / "s"), "--tickers", "2", "--days", "20", "--defect-every", "0")
    summary = call("import_market_data", "s/Crypto", "--market", "crypto")
    assert summary["rows_inserted"] == 40 and summary["files"] == 2
    assert ImportJob.objects.get().market == "CRYPTO"


def test_path_outside_root_is_a_clear_error(data_root):
    out = StringIO()
    with pytest.raises(CommandError, match="outside the data root"):
        call_command("import_market_data", "/etc", "--json", stdout=out)
    assert json.loads(out.getvalue())["code"] == "path_outside_root"


def test_queue_returns_the_job(data_root, django_capture_on_commit_callbacks):
    call("generate_sample_data", str(data_root / "q"), "--tickers", "1", "--days", "5")
    summary = call("import_market_data", "q", "--queue", "--workers", "2")
    assert summary["status"] == "queued"
    assert ImportJob.objects.get(pk=summary["job_id"]).kind == "all_markets"
