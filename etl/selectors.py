"""Read queries of the core that are more than a filter."""

from __future__ import annotations

from typing import Any

from django.db import connection


def table_row_estimate(table: str, *, exact_below: int = 200_000) -> int:
    """Row count from the planner's statistics, exact when the table is small
    (a COUNT(*) over millions of candles is too slow for a status page)."""
    with connection.cursor() as cur:
        cur.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", [table])
        row = cur.fetchone()
        estimate = row[0] if row else -1
        if estimate < exact_below:
            # Table names come from our own code, never from input.
            cur.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")  # noqa: S608
            return cur.fetchone()[0]
        return estimate


def health_check() -> dict[str, Any]:
    """Database and queue broker reachability, and the worker clusters seen."""
    checks: dict[str, Any] = {}
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
        checks["database"] = {"ok": True}
    except Exception as exc:  # any failure to reach the database is "down"
        checks["database"] = {"ok": False, "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
    try:
        from django_q.brokers import get_broker

        broker = get_broker()
        ok = bool(broker.ping())
        checks["queue"] = {"ok": ok, "broker": type(broker).__name__, "queued": broker.queue_size() if ok else None}
    except Exception as exc:
        checks["queue"] = {"ok": False, "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
    try:
        from django_q.status import Stat

        checks["workers"] = {"clusters": len(Stat.get_all())}
    except Exception:
        checks["workers"] = {"clusters": None}
    healthy = checks["database"]["ok"] and checks["queue"]["ok"]
    return {"status": "healthy" if healthy else "unhealthy", "checks": checks}
