from __future__ import annotations

import pytest
from django.db import connection, transaction
from prometheus_client import REGISTRY

from corrections import services
from corrections.models import CorrectionBackup, CorrectionRun, Phase, Scope
from corrections.selectors import SCOPE_SQL, hash_joins, rows_needing_change
from corrections.tests.conftest import market_data_checksum
from etl.errors import ConflictError, DomainError
from etl.models import DataCorrection, MarketData, RunStatus
from etl.pipeline import get_step

pytestmark = pytest.mark.django_db


def values(ticker: str) -> list[str | None]:
    return list(MarketData.objects.filter(ticker=ticker).order_by("id").values_list("asset_class", flat=True))


def new_run(**options) -> CorrectionRun:
    return services.correction_run_create(requested_by="alice", **options)


def test_default_execute_fills_null_and_empty_only(world):
    result = services.correction_execute(run=new_run(batch_size=7))
    assert (result.status, result.phase, result.rows_updated, result.rows_backed_up) == (
        "succeeded",
        "executed",
        35,
        35,
    )
    assert set(values("GARAN")) == {"STOCK_BIST"}
    assert set(values("BTC")) == {"CRYPTO"}
    assert set(values("THYAO")) == {"BIST"}  # mismatched left alone without --overwrite-mismatched
    assert set(values("MYST")) == {None}  # symbol without a class: nothing to copy
    assert set(values("ETH")) == {"CRYPTO"}  # orphan untouched


def test_only_null_leaves_empty_values(world):
    result = services.correction_execute(run=new_run(only_null=True))
    assert result.rows_updated == 28
    assert sorted(set(values("GARAN"))) == ["", "  ", "STOCK_BIST"]


def test_overwrite_mismatched_fixes_folder_names(world):
    result = services.correction_execute(run=new_run(overwrite_mismatched=True, batch_size=13))
    assert result.rows_updated == 75
    assert set(values("THYAO")) == {"STOCK_BIST"} and set(values("AAPL")) == {"STOCK_NASDAQ"}
    assert services.correction_analyze().totals.needing_correction == 0


def test_backup_holds_each_changed_row_once_with_old_value(world):
    run = new_run(overwrite_mismatched=True, batch_size=9)
    before = dict(MarketData.objects.values_list("id", "asset_class"))
    services.correction_execute(run=run)
    backups = list(CorrectionBackup.objects.filter(run=run).values_list("market_data_id", "old_value", "new_value"))
    assert len(backups) == len({b[0] for b in backups}) == 75
    assert all(before[mid] == old for mid, old, _ in backups)
    after = dict(MarketData.objects.values_list("id", "asset_class"))
    assert all(after[mid] == new for mid, _, new in backups)
    changed = {mid for mid in before if before[mid] != after[mid]}
    assert changed == {b[0] for b in backups}


def test_execute_progress_and_batches_are_recorded(world):
    run = new_run(overwrite_mismatched=True, batch_size=10)
    services.correction_execute(run=run)
    run.refresh_from_db()
    assert run.batches_done == 10  # 100 candles
    assert (run.progress_done, run.progress_total, run.percent) == (75, 75, 100.0)
    assert run.rate_per_second > 0 and run.started_at and run.finished_at and run.executed_at


def test_execute_writes_one_audit_entry_per_change_group(world):
    run = new_run(overwrite_mismatched=True)
    services.correction_execute(run=run)
    entries = DataCorrection.objects.filter(run_ref=f"correction:{run.pk}", kind="asset_class_correction")
    groups = {(e.ticker, e.market, e.old_value, e.new_value): e.row_count for e in entries}
    assert groups[("THYAO", "BIST", "BIST", "STOCK_BIST")] == 30
    assert groups[("GARAN", "BIST", None, "STOCK_BIST")] == 20
    assert sum(groups.values()) == 75 and len(groups) == 6
    assert {e.created_by for e in entries} == {"alice"}


def test_execute_twice_is_refused_and_a_new_run_changes_nothing(world):
    run = new_run(overwrite_mismatched=True)
    services.correction_execute(run=run)
    with pytest.raises(ConflictError):
        services.correction_execute(run=run)
    second = services.correction_execute(run=new_run(overwrite_mismatched=True))
    assert second.rows_updated == 0 and second.rows_backed_up == 0


def test_cancel_between_batches_then_resume(world):
    run = new_run(overwrite_mismatched=True, batch_size=10)
    original = services._execute_batch
    calls = []

    def cancel_after_third(run_, low, high):
        calls.append(low)
        changed = original(run_, low, high)
        if len(calls) == 3:
            CorrectionRun.objects.filter(pk=run_.pk).update(cancel_requested=True)
        return changed

    services._execute_batch = cancel_after_third
    try:
        result = services.correction_execute(run=run)
    finally:
        services._execute_batch = original
    assert (result.status, result.phase, result.batches) == ("cancelled", "executing", 3)
    with pytest.raises(ConflictError, match="interrupted"):
        services.correction_execute(run=new_run())
    resumed = services.correction_execute(run=run)
    assert resumed.resumed and resumed.status == "succeeded" and resumed.rows_updated == 75
    assert CorrectionBackup.objects.filter(run=run).count() == 75


def test_cancel_of_an_idle_run_is_refused(world):
    with pytest.raises(ConflictError):
        services.correction_cancel(run=new_run())


def test_a_batch_whose_update_misses_backed_up_rows_is_rolled_back(world, monkeypatch):
    run = new_run(overwrite_mismatched=True, batch_size=50)
    monkeypatch.setattr(services, "APPLY_SQL", services.APPLY_SQL + " AND false")
    with pytest.raises(RuntimeError, match="backed up but 0 changed"):
        services.correction_execute(run=run)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.batches_done == 0 and run.backups.count() == 0
    assert "backed up" in run.error


def test_validate_after_each_batch_stops_at_the_first_bad_batch(world, monkeypatch):
    before = market_data_checksum()
    run = new_run(overwrite_mismatched=True, batch_size=50, validate_each_batch=True)
    # A faulty selection (odd ids skipped): backup and update agree, the post-condition does not.
    monkeypatch.setattr(
        services, "BACKUP_SQL", services.BACKUP_SQL.replace(" FOR UPDATE", " AND mod(md.id, 2) = 0 FOR UPDATE")
    )
    with pytest.raises(DomainError, match="still need correction"):
        services.correction_execute(run=run)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.batches_done == 0 and run.backups.count() == 0
    assert market_data_checksum() == before


def test_validate_checks_post_conditions(world):
    run = new_run(overwrite_mismatched=True)
    services.correction_execute(run=run)
    result = services.correction_validate(run=run)
    assert result.ok and result.needing_correction == 0
    assert {c.name for c in result.checks} == {"nothing_left_in_scope", "backup_equals_changes"}
    run.refresh_from_db()
    assert run.phase == Phase.VALIDATED and run.validation_report["ok"] is True


def test_validate_fails_when_a_candle_in_scope_is_still_wrong(world):
    run = new_run(overwrite_mismatched=True)
    services.correction_execute(run=run)
    MarketData.objects.filter(ticker="THYAO").update(asset_class=None)
    result = services.correction_validate(run=run)
    assert not result.ok
    run.refresh_from_db()
    assert run.phase == Phase.EXECUTED


def test_validate_refuses_a_run_that_did_not_execute(world):
    with pytest.raises(ConflictError):
        services.correction_validate(run=new_run())


def test_rollback_restores_market_data_exactly(world):
    before = market_data_checksum()
    run = new_run(overwrite_mismatched=True, batch_size=8)
    services.correction_execute(run=run)
    assert market_data_checksum() != before
    result = services.correction_rollback(run=run, reason="wrong symbols", requested_by="bob", batch_size=11)
    assert (result.rows_restored, result.conflicts, result.missing, result.phase) == (75, 0, 0, "rolled_back")
    assert market_data_checksum() == before
    entries = DataCorrection.objects.filter(run_ref=f"correction:{run.pk}", kind="asset_class_rollback")
    groups = {(e.ticker, e.old_value, e.new_value): e.row_count for e in entries}
    assert groups[("THYAO", "STOCK_BIST", "BIST")] == 30 and groups[("GARAN", "STOCK_BIST", None)] == 20
    assert sum(groups.values()) == 75 and {e.created_by for e in entries} == {"bob"}
    assert entries[0].detail["reason"] == "wrong symbols"


def test_second_rollback_is_a_conflict(world):
    run = new_run()
    services.correction_execute(run=run)
    services.correction_rollback(run=run, reason="test", requested_by="bob")
    with pytest.raises(ConflictError, match="already rolled back") as err:
        services.correction_rollback(run=run, reason="again", requested_by="bob")
    assert err.value.status_code == 409


def test_rollback_needs_a_reason_and_an_executed_run(world):
    run = new_run()
    with pytest.raises(DomainError, match="reason"):
        services.correction_rollback(run=run, reason="  ", requested_by="bob")
    with pytest.raises(ConflictError, match="never executed"):
        services.correction_rollback(run=run, reason="x", requested_by="bob")


def test_rollback_reports_rows_changed_after_the_run_and_leaves_them(world):
    run = new_run(overwrite_mismatched=True)
    services.correction_execute(run=run)
    edited = list(MarketData.objects.filter(ticker="THYAO").order_by("id").values_list("id", flat=True)[:3])
    MarketData.objects.filter(id__in=edited).update(asset_class="ETF")
    result = services.correction_rollback(run=run, reason="undo", requested_by="bob")
    assert (result.rows_restored, result.conflicts, result.conflicts_restored) == (72, 3, 0)
    assert [s["id"] for s in result.conflict_samples] == edited
    assert {s["current_value"] for s in result.conflict_samples} == {"ETF"}
    assert set(MarketData.objects.filter(id__in=edited).values_list("asset_class", flat=True)) == {"ETF"}
    assert MarketData.objects.filter(ticker="THYAO", asset_class="BIST").count() == 27
    run.refresh_from_db()
    assert run.rollback_conflicts == 3


def test_forced_rollback_restores_conflicts_too(world):
    before = dict(MarketData.objects.values_list("id", "asset_class"))
    run = new_run(overwrite_mismatched=True)
    services.correction_execute(run=run)
    MarketData.objects.filter(ticker="AAPL", asset_class="STOCK_NASDAQ").update(asset_class="ETF")
    result = services.correction_rollback(run=run, reason="undo", requested_by="bob", force=True)
    assert (result.conflicts, result.conflicts_restored) == (10, 10)
    after = dict(MarketData.objects.values_list("id", "asset_class"))
    changed_back = {k for k in before if before[k] != after[k]}
    # Only the 15 AAPL candles that were right before and edited by hand stay edited.
    assert len(changed_back) == 15
    forced = DataCorrection.objects.get(kind="asset_class_rollback_forced")
    assert (forced.old_value, forced.new_value, forced.row_count) == ("ETF", "NASDAQ", 10)


def test_rollback_keeps_updated_at_of_rows_touched_after_the_run(world):
    run = new_run(overwrite_mismatched=True)
    services.correction_execute(run=run)
    touched = MarketData.objects.filter(ticker="THYAO").order_by("id").first()
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE market_data SET close = close + 1, updated_at = now() + interval '1 hour' WHERE id = %s",
            [touched.pk],
        )
    services.correction_rollback(run=run, reason="undo", requested_by="bob")
    touched_after = MarketData.objects.get(pk=touched.pk)
    assert touched_after.asset_class == "BIST"
    assert touched_after.updated_at > touched.updated_at


def test_rollback_counts_deleted_candles_as_missing(world):
    run = new_run()
    services.correction_execute(run=run)
    MarketData.objects.filter(ticker="BTC").delete()
    result = services.correction_rollback(run=run, reason="undo", requested_by="bob")
    assert (result.rows_restored, result.missing) == (27, 8)


def test_rollback_of_an_interrupted_run_restores_what_it_changed(world):
    before = market_data_checksum()
    run = new_run(overwrite_mismatched=True, batch_size=10)
    CorrectionRun.objects.filter(pk=run.pk).update(cancel_requested=False)
    original = services._execute_batch

    def fail_on_fourth(run_, low, high):
        if run_.batches_done == 3:
            raise OSError("disk on fire")
        return original(run_, low, high)

    services._execute_batch = fail_on_fourth
    try:
        with pytest.raises(OSError):
            services.correction_execute(run=run)
    finally:
        services._execute_batch = original
    run.refresh_from_db()
    assert (run.phase, run.status, run.batches_done) == (Phase.EXECUTING, RunStatus.FAILED, 3)
    result = services.correction_rollback(run=run, reason="abandon", requested_by="bob")
    assert result.rows_restored == run.rows_updated > 0
    assert market_data_checksum() == before


def test_pipeline_step_runs_analyze_execute_validate(world):
    step = get_step("correct")
    assert step.order == 40
    summary = step.run(options={}, progress=None)
    # By default every class that disagrees with its symbol's: 35 null/empty + 40 folder names.
    assert (summary["scope"], summary["rows_updated"], summary["validated"]) == ("all", 75, True)
    assert set(values("THYAO")) == {"STOCK_BIST"} and set(values("AAPL")) == {"STOCK_NASDAQ"}
    assert step.run(options={}, progress=None)["rows_updated"] == 0


def test_pipeline_step_narrowed_to_null_with_the_old_option_leaves_the_rest(world):
    summary = get_step("correct").run(options={"onlyProcessNullAssetClass": True}, progress=None)
    assert (summary["scope"], summary["rows_updated"]) == ("null", 28)
    assert set(values("THYAO")) == {"BIST"} and set(values("BTC")) == {"CRYPTO"}
    assert sorted(set(values("GARAN")), key=str) == ["", "  ", "STOCK_BIST"]


def test_pipeline_step_records_breaches_of_the_correction_sla(world, settings):
    settings.CORRECTION_SLA_MIN_QUALITY, settings.CORRECTION_SLA_MAX_SECONDS = 101.0, -1
    warnings = get_step("correct").run(options={}, progress=None)["warnings"]
    assert [w.split(":")[1].split()[0] for w in warnings] == ["took", "quality"]
    settings.CORRECTION_SLA_MIN_QUALITY, settings.CORRECTION_SLA_MAX_SECONDS = 0.0, 7200
    CorrectionRun.objects.update(status=RunStatus.FAILED)  # 1 of 2 runs failed today: 50 % > 5 %
    assert "runs failed in 24 h" in get_step("correct").run(options={}, progress=None)["warnings"][0]


def test_pipeline_step_keeps_the_null_or_empty_scope_when_asked(world):
    summary = get_step("correct").run(options={"overwrite_mismatched": False}, progress=None)
    assert (summary["scope"], summary["rows_updated"]) == ("missing", 35)


def test_batches_are_windows_of_batch_size_ids_and_a_hole_leaves_them_smaller(world):
    # market_data's id index is BRIN (no ordered walk to count rows by): a batch is a window of
    # batch_size ids, so a hole makes some batches smaller, never any candle missed or repeated.
    ids = list(MarketData.objects.order_by("id").values_list("id", flat=True))
    MarketData.objects.filter(id__in=ids[10:60]).delete()  # a hole of 50 ids
    needing = rows_needing_change(scope=Scope.ALL)
    run = new_run(overwrite_mismatched=True, batch_size=25)
    services.correction_execute(run=run)
    run.refresh_from_db()
    assert run.batches_done == -(-(run.id_high - run.id_low + 1) // 25)
    assert run.rows_updated == run.rows_backed_up == needing
    assert rows_needing_change(scope=Scope.ALL) == 0


def test_metrics_count_operations_and_records(world):
    def sample(name: str, **labels) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    started = sample("assetclass_operations_started_total", operation="execute")
    done = sample("assetclass_operations_completed_total", operation="execute", result="succeeded")
    processed = sample("assetclass_records_processed_total", operation="execute")
    restored = sample("assetclass_records_processed_total", operation="rollback")
    durations = sample("assetclass_operation_duration_seconds_count", operation="execute")
    run = new_run(overwrite_mismatched=True)
    services.correction_execute(run=run)
    assert sample("assetclass_operations_started_total", operation="execute") == started + 1
    assert sample("assetclass_operations_completed_total", operation="execute", result="succeeded") == done + 1
    assert sample("assetclass_records_processed_total", operation="execute") == processed + 75
    assert sample("assetclass_operation_duration_seconds_count", operation="execute") == durations + 1
    services.correction_validate(run=run)
    assert sample("assetclass_data_quality_score") == 90.0
    assert sample("assetclass_records_needing_correction") == 0.0
    services.correction_rollback(run=run, reason="metrics", requested_by="bob")
    assert sample("assetclass_records_processed_total", operation="rollback") == restored + 75


def test_cancelled_rollback_resumes_and_restores_everything_once(world):
    before = market_data_checksum()
    run = new_run(overwrite_mismatched=True)
    services.correction_execute(run=run)
    original = services._rollback_batch

    def cancel_after_first(run_, low, high, state):
        restored = original(run_, low, high, state)
        CorrectionRun.objects.filter(pk=run_.pk).update(cancel_requested=True)
        return restored

    services._rollback_batch = cancel_after_first
    try:
        first = services.correction_rollback(run=run, reason="part one", requested_by="bob", batch_size=20)
    finally:
        services._rollback_batch = original
    assert (first.status, first.phase, first.rows_restored) == ("cancelled", "rolling_back", 20)
    with pytest.raises(ConflictError, match="interrupted"):
        services.correction_execute(run=new_run())
    second = services.correction_rollback(run=run, reason="part two", requested_by="bob", batch_size=20)
    assert (second.status, second.phase, second.rows_restored, second.conflicts) == ("succeeded", "rolled_back", 75, 0)
    assert market_data_checksum() == before
    entries = DataCorrection.objects.filter(run_ref=f"correction:{run.pk}", kind="asset_class_rollback")
    assert sum(e.row_count for e in entries) == 75


def test_backups_join_candles_by_hashing_a_window_not_by_one_brin_probe_per_backup(world):
    # The planner sees a run's fresh backups as one row and would probe market_data's BRIN id
    # index once per backup (each probe reads a page range in every partition): minutes per batch.
    run = new_run(overwrite_mismatched=True)
    low, high = MarketData.objects.order_by("id").values_list("id", flat=True)[0], 2**62
    plan_sql = "EXPLAIN " + services.APPLY_SQL
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(services.BACKUP_SQL.format(scope=SCOPE_SQL[run.scope]), [run.pk, low, high])
        with hash_joins():
            cur.execute(plan_sql, [run.pk, low, high, low, high])
            plan = "\n".join(row[0] for row in cur.fetchall())
        transaction.set_rollback(True)
    assert "Hash Join" in plan and "Nested Loop" not in plan


def test_a_queued_execute_cancelled_before_its_worker_starts_is_left_alone(world):
    from corrections import tasks

    run = new_run(overwrite_mismatched=True)
    before = market_data_checksum()
    services.correction_execute_queue(run=run)  # the worker's task is sent when the test's transaction commits
    cancelled = services.correction_cancel(run=run)
    assert (cancelled.status, cancelled.phase) == (RunStatus.CANCELLED, Phase.ANALYZED)
    assert "before its worker started it" in cancelled.error
    result = tasks.correction_execute(run.pk)  # the worker picks the task up later
    assert (result["status"], result["phase"], result["rows_updated"]) == ("cancelled", "analyzed", 0)
    assert market_data_checksum() == before and not CorrectionBackup.objects.filter(run=run).exists()
    # Another run may execute now: the cancelled one no longer waits in the queue.
    assert services.correction_execute(run=new_run()).status == "succeeded"


def test_a_queued_resume_cancelled_before_its_worker_starts_stays_where_it_stopped(world):
    from corrections import tasks

    run = new_run(overwrite_mismatched=True, batch_size=10)
    original = services._execute_batch

    def cancel_after_first(run_, low, high):
        changed = original(run_, low, high)
        CorrectionRun.objects.filter(pk=run_.pk).update(cancel_requested=True)
        return changed

    services._execute_batch = cancel_after_first
    try:
        assert services.correction_execute(run=run).batches == 1
    finally:
        services._execute_batch = original
    backed_up = CorrectionBackup.objects.filter(run=run).count()
    services.correction_execute_queue(run=run)
    assert services.correction_cancel(run=run).status == RunStatus.CANCELLED
    result = tasks.correction_execute(run.pk)
    assert (result["status"], result["phase"], result["batches"]) == ("cancelled", "executing", 1)
    assert CorrectionBackup.objects.filter(run=run).count() == backed_up
    resumed = services.correction_execute(run=run)  # executing it again still resumes it
    assert resumed.resumed and resumed.status == "succeeded" and resumed.rows_updated == 75


def test_a_cancel_that_lands_while_the_worker_prepares_the_run_wins(world, monkeypatch):
    from corrections import tasks

    run = new_run()
    services.correction_execute_queue(run=run)
    counted = services.rows_needing_change

    def cancelled_meanwhile(**kwargs):
        # the operator's cancel commits after the worker read the run as queued, before it is marked running
        services.correction_cancel(run=CorrectionRun.objects.get(pk=run.pk))
        return counted(**kwargs)

    monkeypatch.setattr(services, "rows_needing_change", cancelled_meanwhile)
    result = tasks.correction_execute(run.pk)
    assert (result["status"], result["rows_updated"]) == ("cancelled", 0)
    assert not CorrectionBackup.objects.filter(run=run).exists()
