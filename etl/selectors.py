"""Read queries of the core that are more than a filter."""

from __future__ import annotations

from typing import Any

from django.db import connection

from etl.models import PipelineRun, PipelineStepRun, RunStatus, Symbol

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


_CANDLE_STATS_SQL = """
SELECT COALESCE(m.code, md.market) AS market,
       count(*) AS candles,
       count(*) FILTER (WHERE md.symbol_id IS NULL) AS without_symbol,
       count(*) FILTER (WHERE ac.code IS NOT NULL) AS class_known,
       count(*) FILTER (WHERE ac.code IS NOT NULL AND md.asset_class = ac.code) AS class_consistent
FROM market_data md
LEFT JOIN symbols s ON s.id = md.symbol_id
LEFT JOIN markets m ON m.id = s.market_id
LEFT JOIN asset_classes ac ON ac.id = s.asset_class_id
GROUP BY 1
"""

_SYMBOL_STATS_SQL = """
SELECT m.code,
       count(*) FILTER (WHERE s.is_active) AS symbols_active,
       -- The old guide's count: enriched, or partially enriched (no live answer yet, name known).
       count(*) FILTER (WHERE s.is_active AND (s.enriched_at IS NOT NULL OR s.name <> '')) AS symbols_enriched,
       avg(s.data_quality_score) FILTER (WHERE s.is_active) AS mean_quality
FROM symbols s JOIN markets m ON m.id = s.market_id
GROUP BY 1
"""


def integrity_status() -> dict[str, Any]:
    """Health indicators per market and overall: candles without a symbol
    (goal 0), symbol coverage, asset-class consistency, enrichment coverage
    and the 0-100 overall quality, with each goal checked."""
    keys = ("candles", "without_symbol", "class_known", "class_consistent")
    markets: dict[str, dict[str, Any]] = {}
    blank = {k: 0 for k in (*keys, "symbols_active", "symbols_enriched")}
    with connection.cursor() as cur:
        cur.execute(_CANDLE_STATS_SQL)
        for market, *values in cur.fetchall():
            markets.setdefault(market, dict(blank)).update(zip(keys, values, strict=True))
        cur.execute(_SYMBOL_STATS_SQL)
        for market, active, enriched, mean_quality in cur.fetchall():
            row = markets.setdefault(market, dict(blank))
            row.update(symbols_active=active, symbols_enriched=enriched)
            row["mean_quality"] = round(float(mean_quality), 1) if mean_quality is not None else None
        cur.execute("SELECT avg(data_quality_score) FROM symbols WHERE is_active")
        mean_all = cur.fetchone()[0]
    total = {k: sum(r[k] for r in markets.values()) for k in blank}
    total["mean_quality"] = round(float(mean_all), 1) if mean_all is not None else None
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


def symbol_sync_status() -> dict[str, Any]:
    """What symbol sync has left to do and what it did last."""

    with connection.cursor() as cur:
        # Both served by the partial index market_data_unlinked.
        cur.execute("SELECT count(*), count(DISTINCT (ticker, market)) FROM market_data WHERE symbol_id IS NULL")
        without_symbol, pairs = cur.fetchone()
        cur.execute(
            "SELECT source, count(*), count(*) FILTER (WHERE is_active),"
            " count(*) FILTER (WHERE inference_confidence < 0.85) FROM symbols GROUP BY 1 ORDER BY 1"
        )
        by_source = {src: {"total": n, "active": a, "low_confidence": low} for src, n, a, low in cur.fetchall()}
    last = (
        PipelineStepRun.objects.filter(name="sync", status__in=[RunStatus.SUCCEEDED, RunStatus.FAILED])
        .order_by("-finished_at")
        .first()
    )
    return {
        "candles_without_symbol": without_symbol,
        "unsynced_pairs": pairs,
        "in_sync": without_symbol == 0,
        "symbols": {"total": Symbol.objects.count(), "by_source": by_source},
        "candles_total_estimate": table_row_estimate("market_data"),
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
