"""A feature run that fails mails the admins once."""

from __future__ import annotations

import pytest

from enrichment.candles.models import FeatureRun
from enrichment.candles.services import feature_runs
from etl.models import RunStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def admins(settings):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.SLACK_WEBHOOK_URL = ""


def test_a_failed_feature_run_mails_the_admins_once(reference_data, admins, mailoutbox, monkeypatch):
    def explode(**_kwargs):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(feature_runs, "features_run", explode)
    run = feature_runs.feature_run_create(symbols=[], timeframes=[], full=False, requested_by="alice")
    with pytest.raises(RuntimeError):
        feature_runs.feature_run_execute(run=run)
    [mail] = mailoutbox
    assert mail.subject == f"[MyTrader] CRITICAL: Feature run #{run.pk} failed: kernel exploded"
    assert FeatureRun.objects.get(pk=run.pk).status == RunStatus.FAILED


def test_a_feature_run_that_succeeds_mails_nobody(reference_data, admins, mailoutbox):
    run = feature_runs.feature_run_create(symbols=[], timeframes=[], full=False, requested_by="alice")
    feature_runs.feature_run_execute(run=run)
    assert mailoutbox == []
    assert FeatureRun.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED
