"""The provider panel of the dashboard: circuits and budgets."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from enrichment.providers.selectors import providers_status


def providers_context(request: HttpRequest) -> dict[str, Any]:
    return {
        "providers": providers_status(),
        "status_url": reverse("admin:enrichment_providerstatus_changelist"),
        "fetch_log_url": reverse("admin:enrichment_fetchlog_changelist"),
    }
