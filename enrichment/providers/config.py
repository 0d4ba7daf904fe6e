"""The provider layer's tunables, declared in settings.py (`ENRICHMENT_*`, see
docs/providers.md for each one's meaning and default)."""

from __future__ import annotations

from typing import Any

from django.conf import settings


def provider_setting(name: str) -> Any:
    """`settings.ENRICHMENT_<name>` (tests override them with the `settings` fixture)."""
    return getattr(settings, f"ENRICHMENT_{name}")
