"""Critical failures: logged at CRITICAL on `mytrader.alerts`, whose handler
mails the ADMINS through Django's email settings (see LOGGING in settings)."""

from __future__ import annotations

import logging

from etl.logcontext import run_context

alerts = logging.getLogger("mytrader.alerts")


def alert_critical(message: str, *, run_type: str, run_id: object) -> None:
    with run_context(run_type, run_id):
        alerts.critical(message)
