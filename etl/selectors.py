"""Read queries of the core that are more than a filter."""

from __future__ import annotations

from typing import Any

from django.db import connection

from etl.models import PipelineRun, PipelineStepRun, RunStatus
from etl.summaries import SummaryValues, summary_read

# The leaves of a table's partition tree, or the table itself when it is not partitioned.
PARTITION_LEAVES = """
WITH leaves AS (
    SELECT relid FROM pg_partition_tree(to_regclass(%(t)s)) WHERE isleaf
    UNION ALL SELECT to_regclass(%(t)s) WHERE NOT EXISTS (SELECT FROM pg_partition_tree(to_regclass(%(t)s)))
)
"""
# Built from this module's constants only.
_ESTIMATE = (
    "SELECT CASE WHEN bool_or(c.reltuples < 0) THEN -1 ELSE sum(c.reltuples)::bigint END"
    " FROM leaves l JOIN pg_class c ON c.oid = l.relid"
)
ESTIMATE_SQL = PARTITION_LEAVES + _ESTIMATE  # noqa: S608
BYTES_SQL = PARTITION_LEAVES + "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM leaves"  # noqa: S608


def table_bytes_per_row(table: str, *, rows: int | None = None) -> float:
    """Bytes per row of `table` on disk, every partition's heap, indexes and TOAST included
    (`pg_total_relation_size` over `pg_partition_tree`; a plain table counts as its own only
    partition). `rows` defaults to an exact count(*); pass a known count to save the scan."""
    with connection.cursor() as cur:
        cur.execute(BYTES_SQL, {"t": table})
        total = cur.fetchone()[0]
        if rows is None:
            # Table names come from our own code, never from input.
            cur.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")  # noqa: S608
            rows = cur.fetchone()[0]
    return total / rows if rows else 0.0


def table_row_estimate(table: str, *, exact_below: int = 200_000) -> int:
    """Row count from the planner's statistics, exact when the table is small
    (a COUNT(*) over millions of candles is too slow for a status page)."""
    with connection.cursor() as cur:
        # A partitioned table has no statistics of its own: its partitions' add up.
        cur.execute(ESTIMATE_SQL, {"t": table})
        row = cur.fetchone()
        estimate = row[0] if row and row[0] is not None else -1
        if estimate < exact_below:
            # Table names come from our own code, never from input.
            cur.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")  # noqa: S608
            return cur.fetchone()[0]
        return estimate


# ---------------------------------------------------------------------------
# Data-integrity status (docs/pipeline.md has the formula)

QUALITY_WEIGHTS = {"symbol_coverage": 0.4, "asset_class_consistency": 0.3, "enrichment_coverage": 0.3}
# The operators' health goals (from the old system's ETL operations guide).
HEALTH_GOALS = {
    "candles_without_symbol": ("==", 0),
    "symbol_coverage": (">=", 90.0),
    "enrichment_coverage": (">=", 70.0),
    "overall_quality": (">=", 75.0),
}


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def _quality(indicators: dict[str, float | None]) -> int | None:
    """Weighted mean of the defined components, weights re-normalised over them."""
    parts = [(QUALITY_WEIGHTS[k], v) for k, v in indicators.items() if k in QUALITY_WEIGHTS and v is not None]
    if not parts:
        return None
    return round(sum(w * v for w, v in parts) / sum(w for w, _ in parts))


def _indicators(row: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "candles": row["candles"],
        "candles_without_symbol": row["without_symbol"],
        "symbols_active": row["symbols_active"],
        "symbols_enriched": row["symbols_enriched"],
        "symbol_coverage": _pct(row["candles"] - row["without_symbol"], row["candles"]),
        "asset_class_consistency": _pct(row["class_consistent"], row["class_known"]),
        "enrichment_coverage": _pct(row["symbols_enriched"], row["symbols_active"]),
        "mean_symbol_quality_score": row.get("mean_quality"),
    }
    out["overall_quality"] = _quality(out)
    return out


def _health(ind: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    for name, (op, goal) in HEALTH_GOALS.items():
        value = ind[name]
        ok = value is not None and (value == goal if op == "==" else value >= goal)
        checks.append({"name": name, "value": value, "goal": f"{op} {goal}", "ok": ok})
    return checks


# What the summaries keep per market (etl.summaries; migration 0014 defines the categories).
CLASS_KNOWN = ("candles.class_null", "candles.class_empty", "candles.class_mismatched", "candles.class_correct")
CANDLE_CATEGORIES = ("candles.orphan", "candles.unclassified", *CLASS_KNOWN)


def _market_row(values: SummaryValues, market: str) -> dict[str, Any]:
    scored = values.value("symbols.scored", market)
    return {
        "candles": sum(values.value(m, market) for m in CANDLE_CATEGORIES),
        "without_symbol": values.value("candles.orphan", market),
        "class_known": sum(values.value(m, market) for m in CLASS_KNOWN),
        "class_consistent": values.value("candles.class_correct", market),
        "symbols_active": values.value("symbols.active", market),
        "symbols_enriched": values.value("symbols.enriched", market) + values.value("symbols.partial", market),
        "mean_quality": round(values.value("symbols.score_sum", market) / scored, 1) if scored else None,
    }


def integrity_status() -> dict[str, Any]:
    """Health indicators per market and overall: candles without a symbol
    (goal 0), symbol coverage, asset-class consistency, enrichment coverage
    and the 0-100 overall quality, with each goal checked. Read from the
    integrity summaries: a few rows, whatever the size of market_data."""
    values = summary_read("candles.", "symbols.")
    # A market shows once it has candles (a linked candle counts under its symbol's
    # market, an unlinked one under its raw market) or symbols, active or not.
    codes = values.markets("candles.") | values.markets("symbols.total")
    markets = {code: _market_row(values, code) for code in codes}
    keys = ("candles", "without_symbol", "class_known", "class_consistent", "symbols_active", "symbols_enriched")
    total: dict[str, Any] = {k: sum(r[k] for r in markets.values()) for k in keys}
    scored = values.total("symbols.scored")
    total["mean_quality"] = round(values.total("symbols.score_sum") / scored, 1) if scored else None
    per_market = {code: _indicators(row) for code, row in sorted(markets.items())}
    overall = _indicators(total)
    checks = _health(overall)
    return {
        "status": "healthy" if all(c["ok"] for c in checks) else "attention",
        "overall": overall,
        "checks": checks,
        "markets": per_market,
        "weights": QUALITY_WEIGHTS,
    }


def _symbols_by_source(values: SummaryValues) -> dict[str, dict[str, int]]:
    """{source: {"total", "active", "low_confidence"}} from `symbols.source.<source>.<what>`."""
    by_source: dict[str, dict[str, int]] = {}
    for metric in values.metrics("symbols.source."):
        source, what = metric.removeprefix("symbols.source.").rsplit(".", 1)
        counts = by_source.setdefault(source, {"total": 0, "active": 0, "low_confidence": 0})
        counts[what] = values.total(metric)
    return {source: counts for source, counts in sorted(by_source.items()) if counts["total"]}


def symbol_sync_status() -> dict[str, Any]:
    """What symbol sync has left to do and what it did last (from the integrity summaries)."""
    values = summary_read("candles.", "symbols.")
    without_symbol = values.total("candles.orphan")
    last = (
        PipelineStepRun.objects.filter(name="sync", status__in=[RunStatus.SUCCEEDED, RunStatus.FAILED])
        .order_by("-finished_at")
        .first()
    )
    return {
        "candles_without_symbol": without_symbol,
        "unsynced_pairs": values.total("candles.unlinked_pairs"),
        "in_sync": without_symbol == 0,
        "symbols": {"total": values.total("symbols.total"), "by_source": _symbols_by_source(values)},
        # Exact now (the old name stays: it was the planner's estimate).
        "candles_total_estimate": sum(values.total(m) for m in CANDLE_CATEGORIES),
        "last_sync": None
        if last is None
        else {
            "pipeline_run": last.run_id,
            "status": last.status,
            "finished_at": last.finished_at,
            "duration_seconds": last.duration_seconds,
            "counts": last.counts,
            "error": last.error,
        },
    }


def pipeline_history(*, status: str | None = None, trigger: str | None = None):
    """Pipeline runs, newest first, with their steps."""

    runs = PipelineRun.objects.prefetch_related("step_runs")
    if status:
        runs = runs.filter(status=status)
    if trigger:
        runs = runs.filter(trigger=trigger)
    return runs
