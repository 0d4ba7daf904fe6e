from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django_q.conf import Conf

from corrections import selectors, services
from corrections.models import CorrectionRun, Phase
from corrections.tests.conftest import market_data_checksum
from etl.errors import ConflictError
from etl.models import DataCorrection, MarketData

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:corrections_correctionrun_changelist")


def executed_run(**options) -> CorrectionRun:
    run = services.correction_run_create(requested_by="alice", **options)
    services.correction_execute(run=run)
    return run


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_changelist_and_run_page_show_analysis_and_progress(admin_client, world):
    run = executed_run(overwrite_mismatched=True, batch_size=10)
    services.correction_validate(run=run)
    page = admin_client.get(CHANGELIST)
    assert page.status_code == 200 and b"New analysis" in page.content and b"100.0 %" in page.content
    detail = admin_client.get(reverse("admin:corrections_correctionrun_change", args=[run.pk]))
    body = detail.content.decode()
    assert detail.status_code == 200
    assert "quality score 15.0 %" in body
    assert "BINANCE" in body and "nothing_left_in_scope" in body


def test_new_analysis_page_records_a_run(admin_client, world):
    url = reverse("admin:corrections_analyze")
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(url, {"scope": "all", "batch_size": "1000"})
    run = CorrectionRun.objects.get()
    assert response.status_code == 302 and response.url.endswith(f"/{run.pk}/change/")
    assert (run.overwrite_mismatched, run.batch_size, run.phase) == (True, 1000, Phase.ANALYZED)


def test_new_analysis_rejects_a_bad_batch_size(admin_client, world):
    response = admin_client.post(reverse("admin:corrections_analyze"), {"scope": "all", "batch_size": "0"}, follow=True)
    assert any("batch_size must be between" in m for m in messages_of(response))
    response = admin_client.post(reverse("admin:corrections_analyze"), {"batch_size": "many"}, follow=True)
    assert any("whole number" in m for m in messages_of(response))
    assert not CorrectionRun.objects.exists()


def test_preview_execute_validate_actions(admin_client, world, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(Conf, "SYNC", True)
    run = services.correction_run_create(requested_by="alice", overwrite_mismatched=True)
    data = {ACTION_CHECKBOX_NAME: [run.pk]}
    response = admin_client.post(CHANGELIST, {**data, "action": "preview_runs"}, follow=True)
    assert any("75 candles would change in 6 groups" in m for m in messages_of(response))
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(CHANGELIST, {**data, "action": "execute_runs"}, follow=True)
    assert any("queued" in m for m in messages_of(response))
    run.refresh_from_db()
    assert run.phase == Phase.EXECUTED and run.rows_updated == 75
    response = admin_client.post(CHANGELIST, {**data, "action": "validate_runs"}, follow=True)
    assert any("valid (quality score 90.0 %)" in m for m in messages_of(response))
    response = admin_client.post(CHANGELIST, {**data, "action": "cancel_runs"}, follow=True)
    assert any("not running" in m for m in messages_of(response))


def test_rollback_asks_for_confirmation_first(admin_client, world):
    run = executed_run(overwrite_mismatched=True)
    MarketData.objects.filter(ticker="BTC").update(asset_class="ETF")
    before = dict(MarketData.objects.values_list("id", "asset_class"))
    response = admin_client.post(CHANGELIST, {ACTION_CHECKBOX_NAME: [run.pk], "action": "rollback_runs"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "Are you sure?" in body and "67 candles will be restored" in body and "8 candles were changed" in body
    assert dict(MarketData.objects.values_list("id", "asset_class")) == before  # nothing happened yet


def test_rollback_without_a_reason_stays_on_the_confirmation_page(admin_client, world):
    run = executed_run()
    data = {ACTION_CHECKBOX_NAME: [run.pk], "action": "rollback_runs", "post": "yes", "reason": " "}
    response = admin_client.post(CHANGELIST, data)
    assert response.status_code == 200 and b"Give a reason" in response.content
    run.refresh_from_db()
    assert run.phase == Phase.EXECUTED


def test_confirmed_rollback_restores_and_reports_conflicts(admin_client, world):
    original = market_data_checksum()
    run = executed_run(overwrite_mismatched=True)
    data = {ACTION_CHECKBOX_NAME: [run.pk], "action": "rollback_runs", "post": "yes", "reason": "bad mapping"}
    response = admin_client.post(CHANGELIST, data, follow=True)
    assert any("75 candles restored, 0 changed after the run" in m for m in messages_of(response))
    assert market_data_checksum() == original
    assert DataCorrection.objects.filter(kind="asset_class_rollback", created_by="admin").exists()
    again = admin_client.post(CHANGELIST, {**data, "post": ""})
    assert b"already rolled back" in again.content
    response = admin_client.post(CHANGELIST, data, follow=True)
    assert any("already rolled back" in m for m in messages_of(response))


def test_staff_without_rollback_permission_has_no_rollback_action(client, make_user, world):
    user = make_user(staff=True, perms=("corrections.view_correctionrun",))
    client.force_login(user)
    page = client.get(CHANGELIST)
    assert page.status_code == 200
    actions = [choice[0] for choice in page.context["action_form"].fields["action"].choices]
    assert "preview_runs" in actions and "rollback_runs" not in actions and "execute_runs" not in actions


def test_confirmation_page_and_rollback_service_refuse_by_the_same_rule(admin_client, world):
    never_executed = services.correction_run_create(requested_by="alice")
    refusal = selectors.rollback_refusal(run=never_executed)
    assert (refusal.code, refusal.reason) == ("bad_phase", "never executed: there is nothing to roll back")
    page = admin_client.post(CHANGELIST, {ACTION_CHECKBOX_NAME: [never_executed.pk], "action": "rollback_runs"})
    assert f"Cannot be rolled back: {refusal.reason}.".encode() in page.content
    with pytest.raises(ConflictError) as refused:
        services.correction_rollback(run=never_executed, reason="oops", requested_by="bob")
    assert (refused.value.code, refused.value.message) == (
        "bad_phase",
        f"Correction {never_executed.pk}: {refusal.reason}.",
    )
    assert selectors.rollback_refusal(run=executed_run()) is None
