"""The one clock the circuit breaker reads, so tests can move time forward
(`monkeypatch.setattr(clock, "now", ...)`) without sleeping 300 seconds."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone


def now() -> datetime:
    return timezone.now()
