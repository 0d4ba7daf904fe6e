"""Health that sees the work, in the one shape every health endpoint answers:

    {"status": "healthy" | "degraded" | "unhealthy", "checks": {name: {"ok": bool, ...}}}

`unhealthy` (the views answer 503) when the database or the queue broker is
down; `degraded` when any other check fails: no worker cluster has reported
for HEALTH_WORKER_STALE_SECONDS while tasks wait, the oldest queued task is
older than HEALTH_QUEUE_AGE_SECONDS, a running run's progress has not moved
for HEALTH_RUN_STALL_MINUTES, a worker signs with another SECRET_KEY than
this web (so it cannot read the tasks queued here), or a check an app registered fails (an open
provider circuit, an interrupted correction).

django-q2 keeps a cluster's status for three seconds only, and a run records
no heartbeat, so "since when" is remembered in the shared cache between
checks: the first check that sees no cluster (or a run's progress at a
value) starts the clock, and monitoring that polls health keeps it running.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis
from django_q.signing import SignedPackage
from django_q.status import Stat

from etl.metrics import run_kind, run_models
from etl.queue import mismatched_workers

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
CACHE_PREFIX = "etl:health:"
# Long enough to outlive any gap between two checks; the entries are tiny.
CACHE_SECONDS = 7 * 86400


@dataclass(frozen=True, slots=True)
class HealthReport:
    status: str
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "checks": self.checks}

    @property
    def http_status(self) -> int:
        return 503 if self.status == UNHEALTHY else 200


Check = Callable[[datetime], dict[str, Any]]
_CHECKS: dict[str, Check] = {}


def register_health_check(name: str, check: Check) -> None:
    """Apps add a check from ready(): `check(now)` returns {"ok": bool, ...};
    not ok makes every health endpoint `degraded`."""
    _CHECKS[name] = check


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def _error(exc: Exception) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _database() -> dict[str, Any]:
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
        return {"ok": True}
    except Exception as exc:  # any failure to reach the database is "down"
        return {"ok": False, "error": _error(exc)}


def _oldest_queued(broker) -> datetime | None:
    """When the task that has waited longest was queued (None: queue empty)."""
    if isinstance(broker, ORM):
        # A waiting task's lock is its enqueue time; a pulled one's is in the future.
        return (
            broker.get_connection()
            .filter(key=broker.list_key, lock__lte=timezone.now())
            .order_by("lock")
            .values_list("lock", flat=True)
            .first()
        )
    if isinstance(broker, Redis):
        head = broker.connection.lindex(broker.list_key, 0)  # rpush to enqueue, pop from the left
        return SignedPackage.loads(head).get("started") if head else None
    return None


def _queue(now: datetime) -> dict[str, Any]:
    try:
        broker = get_broker()
        if not broker.ping():
            return {"ok": False, "broker": type(broker).__name__, "error": "no answer to ping"}
        queued = broker.queue_size()
        oldest = _oldest_queued(broker) if queued else None
    except Exception as exc:
        return {"ok": False, "error": _error(exc)}
    return {
        "ok": True,
        "broker": type(broker).__name__,
        "queued": queued,
        "oldest_queued_seconds": round((now - oldest).total_seconds(), 1) if oldest else None,
    }


def _since(key: str, now: datetime, *, reset: bool, start: datetime | None = None) -> datetime:
    """The moment a condition was first seen (kept in the shared cache); `reset` forgets it."""
    if reset:
        cache.delete(CACHE_PREFIX + key)
        return now
    cache.add(CACHE_PREFIX + key, (start or now).isoformat(), CACHE_SECONDS)
    return datetime.fromisoformat(cache.get(CACHE_PREFIX + key, (start or now).isoformat()))


def _workers(now: datetime, queued: int | None) -> dict[str, Any]:
    stale = _setting("HEALTH_WORKER_STALE_SECONDS", 60)
    try:
        stats = Stat.get_all()
    except Exception as exc:
        return {"ok": False, "error": _error(exc)}
    workers = sum(len(stat.workers or []) for stat in stats)
    missing_since = _since("workers_missing", now, reset=bool(stats))
    missing = 0.0 if stats else (now - missing_since).total_seconds()
    ok = bool(stats) or not queued or missing < stale
    return {"ok": ok, "clusters": len(stats), "workers": workers, "missing_seconds": round(missing, 1)}


def _queue_age(queue: dict[str, Any]) -> dict[str, Any]:
    limit = _setting("HEALTH_QUEUE_AGE_SECONDS", 600)
    age = queue.get("oldest_queued_seconds")
    return {"ok": age is None or age < limit, "oldest_seconds": age, "limit_seconds": limit}


def _stalled_runs(now: datetime) -> dict[str, Any]:
    """Running runs whose progress has not moved for HEALTH_RUN_STALL_MINUTES."""
    limit = timedelta(minutes=_setting("HEALTH_RUN_STALL_MINUTES", 15))
    stalled: dict[str, list[int]] = {}
    for model in run_models():
        kind = run_kind(model)
        # Served by the status index: running runs are few.
        for pk, done, started in model.objects.filter(status="running").values_list(
            "pk", "progress_done", "started_at"
        ):
            key = f"progress:{kind}:{pk}"
            seen = cache.get(CACHE_PREFIX + key + ":done")
            if seen != done:
                cache.set(CACHE_PREFIX + key + ":done", done, CACHE_SECONDS)
                _since(key, now, reset=True)
            # No progress yet at the first look: the clock started with the run.
            since = _since(key, now, reset=False, start=started if seen is None and not done else None)
            if now - since >= limit:
                stalled.setdefault(kind, []).append(pk)
    return {"ok": not stalled, "runs": stalled, "limit_minutes": limit.total_seconds() / 60}


def _signing_key() -> dict[str, Any]:
    """Workers whose signing probe this web cannot read: their SECRET_KEY differs, so
    they would drop every task queued here (they refuse to start; see etl.queue)."""
    mismatched = mismatched_workers()
    if not mismatched:
        return {"ok": True}
    names = [probe.name.split(":", 1)[-1] for probe in mismatched]
    return {
        "ok": False,
        "workers": names,
        "reason": f"worker(s) {', '.join(names)} sign with another SECRET_KEY than this web: they cannot read its "
        "tasks and refuse to start; set the same SECRET_KEY on web and workers",
    }


def health_report(*, extra: Callable[[], Mapping[str, Any]] | None = None, now: datetime | None = None) -> HealthReport:
    """Every check, plus an endpoint's own: `extra()` returns name → {"ok": ...}
    (or a plain value, shown as is); it is not called when the database is down."""
    now = now or timezone.now()
    checks: dict[str, dict[str, Any]] = {"database": _database(), "queue": _queue(now)}
    if not (checks["database"]["ok"] and checks["queue"]["ok"]):
        return HealthReport(UNHEALTHY, checks)
    checks["workers"] = _workers(now, checks["queue"]["queued"])
    checks["queue_age"] = _queue_age(checks["queue"])
    checks["stalled_runs"] = _stalled_runs(now)
    checks["signing_key"] = _signing_key()
    for name, check in _CHECKS.items():
        checks[name] = check(now)
    for name, value in (extra() if extra else {}).items():
        if name in checks:
            continue  # the shared check of that name already answered
        checks[name] = value if isinstance(value, dict) and "ok" in value else {"ok": True, "value": value}
    return HealthReport(HEALTHY if all(c.get("ok", True) for c in checks.values()) else DEGRADED, checks)
