"""A correction whose execute or rollback fails mails the admins once."""

from __future__ import annotations

import pytest

from corrections import services
from corrections.models import CorrectionRun
from etl.models import RunStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def admins(settings):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.SLACK_WEBHOOK_URL = ""
    return settings


def _failing_batches(monkeypatch) -> None:
    # The update then misses every backed-up row: the batch refuses itself and the run fails.
    monkeypatch.setattr(services, "APPLY_SQL", services.APPLY_SQL + " AND false")


def test_a_failed_execute_mails_the_admins_once(world, admins, mailoutbox, monkeypatch):
    run = services.correction_run_create(requested_by="alice", overwrite_mismatched=True)
    _failing_batches(monkeypatch)
    with pytest.raises(RuntimeError):
        services.correction_execute(run=run)
    [mail] = mailoutbox
    assert mail.subject.startswith(f"[MyTrader] CRITICAL: Correction run #{run.pk} failed: ")
    assert "backed up but 0 changed" in mail.subject
    assert mail.to == ["ops@example.com"]
    assert CorrectionRun.objects.get(pk=run.pk).status == RunStatus.FAILED


def test_a_failed_rollback_mails_the_admins_once(world, admins, mailoutbox, monkeypatch):
    run = services.correction_run_create(requested_by="alice", overwrite_mismatched=True)
    services.correction_execute(run=run)
    monkeypatch.setattr(
        services, "RESTORE_SQL", services.RESTORE_SQL.replace("FROM correction_backups", "FROM no_such_table")
    )
    with pytest.raises(Exception, match="no_such_table"):
        services.correction_rollback(run=run, reason="bad data", requested_by="alice")
    [mail] = mailoutbox
    assert mail.subject.startswith(f"[MyTrader] CRITICAL: Correction run #{run.pk} failed: rollback: ")


def test_a_successful_execute_mails_nobody(world, admins, mailoutbox):
    services.correction_execute(run=services.correction_run_create(requested_by="alice"))
    assert mailoutbox == []
