"""Retention: every table that grows with use registers how to prune itself.

Apps call `register_pruner(name, fn)` from their `AppConfig.ready()`; `fn(cutoff)`
deletes what is older than `cutoff` (and safe to delete) and returns the count.
The service `etl.services.retention.retention_prune` runs them all.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

Pruner = Callable[[datetime], int]

_PRUNERS: dict[str, Pruner] = {}


def register_pruner(name: str, fn: Pruner) -> None:
    _PRUNERS[name] = fn


def registered_pruners() -> dict[str, Pruner]:
    return dict(sorted(_PRUNERS.items()))
