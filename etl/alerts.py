"""A failed run reaches people without Prometheus: a mail to `ADMINS` and,
when `SLACK_WEBHOOK_URL` is set, a post to that Slack incoming webhook.

When Prometheus and Alertmanager run (ops/, docs/alerting.md) they page and
route by severity; this is the path that works on a bare install, so every
run kind calls it when a run fails for good.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import requests
from django.conf import settings
from django.core.mail import mail_admins

from etl.logcontext import run_context

log = logging.getLogger(__name__)

# A failing run waits for this notification; a chat service must not hold it long.
SLACK_TIMEOUT_SECONDS = 5.0
SUBJECT_MAX_CHARS = 200


@dataclass(frozen=True, slots=True)
class NotifyResult:
    mailed: bool  # a mail went out to the admins
    posted: bool  # Slack accepted the message


def run_failure_notify(*, kind: str, run_id: object, summary: str, url: str | None = None) -> NotifyResult:
    """Mail the admins that a run failed and post it to Slack when a webhook is set.
    `summary` is the human sentence naming the run and its error. Never raises:
    a notification that cannot be sent is logged, so it never hides the failure it reports."""
    with run_context(kind, run_id):
        log.error("run failed: %s", summary)
        mailed = _mail_admins(kind=kind, run_id=run_id, summary=summary, url=url)
        posted = _slack_post(summary=summary, url=url)
    return NotifyResult(mailed=mailed, posted=posted)


def _mail_admins(*, kind: str, run_id: object, summary: str, url: str | None) -> bool:
    if not settings.ADMINS:
        return False
    # A header holds one line; the whole text goes in the body.
    first_line = summary.strip().splitlines()[0] if summary.strip() else f"{kind} run #{run_id} failed"
    subject = f"CRITICAL: {first_line[:SUBJECT_MAX_CHARS]}"
    body = f"{summary}\n\nRun: {kind} #{run_id}\n" + (f"Details: {url}\n" if url else "")
    try:
        mail_admins(subject, body, fail_silently=False)
    except OSError as exc:  # smtplib's errors and refused connections alike
        log.error("could not mail the admins about the failed run: %s", exc)
        return False
    return True


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn reads these three as markup (links, mentions).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_post(*, summary: str, url: str | None) -> bool:
    webhook = getattr(settings, "SLACK_WEBHOOK_URL", "")
    if not webhook:
        return False
    text = f":rotating_light: {_slack_escape(summary)}"
    if url:
        text += f"\n<{url}|Open the run>"
    try:
        response = requests.post(webhook, json={"text": text}, timeout=SLACK_TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        # Only the exception's type: its text carries the webhook URL, which is a secret.
        log.error("could not post the failed run to Slack: %s", type(exc).__name__)
        return False
    if response.status_code != 200:
        log.error("Slack refused the failed-run message: HTTP %s %s", response.status_code, response.text[:200])
        return False
    return True
