"""A failed run mails the admins and, with a webhook set, posts to Slack
(a local HTTP server stands in for Slack); a notification that cannot be sent
is logged and never raised."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest
from werkzeug import Request, Response

from etl import alerts
from etl.logcontext import RunContextFilter

ADMINS = [("Ops", "ops@example.com"), ("Lead", "lead@example.com")]


@pytest.fixture
def admins(settings):
    settings.ADMINS = ADMINS
    settings.SLACK_WEBHOOK_URL = ""
    return settings


@pytest.fixture
def slack(httpserver, admins):
    """A local Slack incoming webhook; returns the path it answers on."""
    path = "/services/T000/B000/secret-token"
    admins.SLACK_WEBHOOK_URL = httpserver.url_for(path)
    return path


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def notify_correction_failed(**overrides):
    return alerts.run_failure_notify(
        **{"kind": "correction", "run_id": 7, "summary": "Correction run #7 failed: deadlock detected", **overrides}
    )


def test_a_failed_run_mails_every_admin_and_posts_nothing_without_a_webhook(admins, mailoutbox):
    result = notify_correction_failed(url="https://mytrader.example.com/admin/corrections/correctionrun/7/change/")
    assert result == alerts.NotifyResult(mailed=True, posted=False)
    [mail] = mailoutbox
    assert mail.to == ["ops@example.com", "lead@example.com"]
    assert mail.subject == "[MyTrader] CRITICAL: Correction run #7 failed: deadlock detected"
    assert "Run: correction #7" in mail.body
    assert "Details: https://mytrader.example.com/admin/corrections/correctionrun/7/change/" in mail.body


def test_a_multi_line_error_keeps_the_subject_to_its_first_line(admins, mailoutbox):
    notify_correction_failed(summary="Feature run #3 failed: 2 series failed\nBTC 1h: NaN close\nETH 1h: gap")
    [mail] = mailoutbox
    assert mail.subject == "[MyTrader] CRITICAL: Feature run #3 failed: 2 series failed"
    assert "BTC 1h: NaN close\nETH 1h: gap" in mail.body


def test_without_admins_nobody_is_mailed(settings, mailoutbox):
    settings.ADMINS, settings.SLACK_WEBHOOK_URL = [], ""
    assert notify_correction_failed() == alerts.NotifyResult(mailed=False, posted=False)
    assert mailoutbox == []


def test_with_a_webhook_the_failure_is_posted_to_slack_as_well(httpserver, slack, mailoutbox):
    httpserver.expect_oneshot_request(slack, method="POST").respond_with_data("ok")
    result = notify_correction_failed(
        summary="Import job #4 (BIST) failed: <no file> & 2 rejected", url="https://mytrader.example.com/r/4"
    )
    assert result == alerts.NotifyResult(mailed=True, posted=True)
    [(request, _response)] = httpserver.log
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.get_data()) == {
        "text": ":rotating_light: Import job #4 (BIST) failed: &lt;no file&gt; &amp; 2 rejected"
        "\n<https://mytrader.example.com/r/4|Open the run>"
    }
    assert len(mailoutbox) == 1


def test_a_slack_error_is_logged_without_the_secret_url_and_the_mail_still_goes(httpserver, slack, mailoutbox, caplog):
    httpserver.expect_oneshot_request(slack, method="POST").respond_with_data("invalid_token", status=403)
    with caplog.at_level(logging.ERROR, logger="etl.alerts"):
        result = notify_correction_failed()
    assert result == alerts.NotifyResult(mailed=True, posted=False)
    assert "Slack refused the failed-run message: HTTP 403 invalid_token" in caplog.text
    assert "secret-token" not in caplog.text
    assert len(mailoutbox) == 1


def test_a_slack_that_does_not_answer_in_time_is_given_up(httpserver, slack, mailoutbox, caplog, monkeypatch):
    monkeypatch.setattr(alerts, "SLACK_TIMEOUT_SECONDS", 0.2)

    def slow(_request: Request) -> Response:
        time.sleep(1.0)
        return Response("ok")

    httpserver.expect_oneshot_request(slack, method="POST").respond_with_handler(slow)
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="etl.alerts"):
        result = notify_correction_failed()
    assert time.monotonic() - started < 1.0
    assert result.posted is False
    assert "could not post the failed run to Slack: ReadTimeout" in caplog.text
    assert "secret-token" not in caplog.text


def test_an_unreachable_slack_is_logged_not_raised(admins, closed_port, mailoutbox, caplog):
    admins.SLACK_WEBHOOK_URL = f"http://127.0.0.1:{closed_port}/services/T000/B000/secret-token"
    with caplog.at_level(logging.ERROR, logger="etl.alerts"):
        result = notify_correction_failed()
    assert result == alerts.NotifyResult(mailed=True, posted=False)
    assert "could not post the failed run to Slack: ConnectionError" in caplog.text
    assert "secret-token" not in caplog.text


def test_a_malformed_webhook_setting_is_logged_not_raised(admins, mailoutbox, caplog):
    admins.SLACK_WEBHOOK_URL = "hooks.slack.com/services/no-scheme"
    with caplog.at_level(logging.ERROR, logger="etl.alerts"):
        assert notify_correction_failed().posted is False
    assert "could not post the failed run to Slack: MissingSchema" in caplog.text


def test_a_mail_server_that_refuses_is_logged_and_slack_still_gets_the_post(
    httpserver, admins, slack, closed_port, caplog
):
    admins.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    admins.EMAIL_HOST, admins.EMAIL_PORT, admins.EMAIL_TIMEOUT = "127.0.0.1", closed_port, 2
    httpserver.expect_oneshot_request(slack, method="POST").respond_with_data("ok")
    with caplog.at_level(logging.ERROR, logger="etl.alerts"):
        result = notify_correction_failed()
    assert result == alerts.NotifyResult(mailed=False, posted=True)
    assert "could not mail the admins about the failed run" in caplog.text


def test_the_failure_is_logged_with_its_run(admins, mailoutbox, caplog):
    caplog.handler.addFilter(RunContextFilter())  # what the console handler does in settings.LOGGING
    with caplog.at_level(logging.ERROR, logger="etl.alerts"):
        notify_correction_failed()
    [record] = [r for r in caplog.records if r.getMessage().startswith("run failed")]
    assert record.getMessage() == "run failed: Correction run #7 failed: deadlock detected"
    assert (record.run_type, record.run_id) == ("correction", "7")
