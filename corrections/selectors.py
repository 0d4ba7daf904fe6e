"""Read queries of the correction: analysis, preview, rollback preflight, status.

Every category is defined once, here, as SQL over
`market_data md LEFT JOIN symbols s LEFT JOIN asset_classes ac`:

- orphan: the candle has no symbol (sync has not linked it);
- unclassified: its symbol has no asset class, so there is nothing to copy;
- null / empty (NULL, or only blanks) / mismatched (differs from the
  symbol's class) / correct (equals it): candles whose symbol has a class.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext

from corrections.models import CorrectionRun, Phase, Scope
from etl import locks
from etl.errors import DomainError
from etl.summaries import summary_read

ORPHAN_WARNING_PERCENT = 10.0

JOIN = (
    " FROM market_data md"
    " LEFT JOIN symbols s ON s.id = md.symbol_id"
    " LEFT JOIN asset_classes ac ON ac.id = s.asset_class_id"
)
CATEGORY_SQL = {
    "orphan": "md.symbol_id IS NULL",
    "unclassified": "md.symbol_id IS NOT NULL AND ac.id IS NULL",
    "null": "ac.id IS NOT NULL AND md.asset_class IS NULL",
    "empty": "ac.id IS NOT NULL AND btrim(md.asset_class) = ''",
    "mismatched": "ac.id IS NOT NULL AND btrim(md.asset_class) <> '' AND md.asset_class <> ac.code",
    "correct": "ac.id IS NOT NULL AND md.asset_class = ac.code",
}
CATEGORIES = tuple(CATEGORY_SQL)
# The name each category has in the integrity summaries ("candles.<name>").
SUMMARY_CATEGORY = {
    "null": "class_null",
    "empty": "class_empty",
    "mismatched": "class_mismatched",
    "correct": "class_correct",
}
NEEDS_CORRECTION = ("null", "empty", "mismatched")

# Which candles a scope changes; each assumes `ac` is joined (inner).
SCOPE_SQL = {
    Scope.NULL: "md.asset_class IS NULL",
    Scope.MISSING: "(md.asset_class IS NULL OR btrim(md.asset_class) = '')",
    Scope.ALL: "md.asset_class IS DISTINCT FROM ac.code",
}


# The categories each scope changes: SCOPE_SQL over the candles whose symbol has a class.
SCOPE_CATEGORIES = {
    Scope.NULL: ("null",),
    Scope.MISSING: ("null", "empty"),
    Scope.ALL: ("null", "empty", "mismatched"),
}


def scope_for(*, only_null: bool, overwrite_mismatched: bool) -> Scope:
    if only_null and overwrite_mismatched:
        raise DomainError(
            gettext("only_null and overwrite_mismatched exclude each other: choose one scope"), code="invalid_options"
        )
    if only_null:
        return Scope.NULL
    return Scope.ALL if overwrite_mismatched else Scope.MISSING


def _rows(sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        names = [c.name for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


@dataclass(frozen=True, slots=True)
class CategoryCounts:
    total: int = 0
    null: int = 0
    empty: int = 0
    mismatched: int = 0
    correct: int = 0
    orphan: int = 0
    unclassified: int = 0

    @property
    def needing_correction(self) -> int:
        return self.null + self.empty + self.mismatched


@dataclass(frozen=True, slots=True)
class AnalyzeReport:
    totals: CategoryCounts
    by_market: list[dict[str, Any]]
    by_asset_class: list[dict[str, Any]]
    by_expected_class: list[dict[str, Any]]
    samples: dict[str, list[dict[str, Any]]]
    warnings: list[str] = field(default_factory=list)

    @property
    def orphan_percent(self) -> float:
        return round(100.0 * self.totals.orphan / self.totals.total, 2) if self.totals.total else 0.0

    @property
    def quality_score(self) -> float:
        """Percent of candles whose asset class is known to be right (orphans
        and unclassified ones cannot be checked, so they do not count as right)."""
        return round(100.0 * self.totals.correct / self.totals.total, 2) if self.totals.total else 100.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "totals": {**asdict(self.totals), "needing_correction": self.totals.needing_correction},
            "orphan_percent": self.orphan_percent,
            "quality_score": self.quality_score,
            "warnings": list(self.warnings),
            "by_market": self.by_market,
            "by_asset_class": self.by_asset_class,
            "by_expected_class": self.by_expected_class,
            "samples": self.samples,
        }


def category_totals() -> CategoryCounts:
    """The categories' totals from the integrity summaries (etl.summaries): a few rows,
    not a scan. Same definitions as CATEGORY_SQL (the summary triggers use them)."""
    values = summary_read("candles.")
    counts = {name: values.total(f"candles.{SUMMARY_CATEGORY.get(name, name)}") for name in CATEGORIES}
    return CategoryCounts(total=sum(counts.values()), **counts)


def candidates_in_scope(*, scope: Scope, totals: CategoryCounts) -> int:
    """How many candles `scope` would change, from the summaries' category totals."""
    return sum(getattr(totals, name) for name in SCOPE_CATEGORIES[Scope(scope)])


def asset_class_analysis(*, sample_size: int = 5) -> AnalyzeReport:
    """Counts per category in total, by market, by current asset class and by
    the symbol's class (one scan, GROUPING SETS), and a few sample candles."""
    counts = ", ".join(f"count(*) FILTER (WHERE {cond}) AS {name}" for name, cond in CATEGORY_SQL.items())
    # Fragments are constants of this module; nothing from input reaches the SQL text.
    sql = (
        "SELECT GROUPING(md.market) AS g_market, GROUPING(md.asset_class) AS g_class,"  # noqa: S608
        " GROUPING(ac.code) AS g_expected, md.market, md.asset_class, ac.code AS expected,"
        f" count(*) AS total, {counts}{JOIN}"
        " GROUP BY GROUPING SETS ((md.market), (md.asset_class), (ac.code), ())"
    )
    by_market, by_class, by_expected = [], [], []
    totals = CategoryCounts()
    for row in _rows(sql):
        numbers = {name: row[name] for name in ("total", *CATEGORIES)}
        if row["g_market"] == 0:
            by_market.append({"market": row["market"], **numbers})
        elif row["g_class"] == 0:
            by_class.append({"asset_class": row["asset_class"], **numbers})
        elif row["g_expected"] == 0:
            by_expected.append({"expected_class": row["expected"], **numbers})
        else:
            totals = CategoryCounts(**numbers)
    by_market.sort(key=lambda r: r["market"])
    by_class.sort(key=lambda r: (r["asset_class"] is None, r["asset_class"] or ""))
    by_expected.sort(key=lambda r: (r["expected_class"] is None, r["expected_class"] or ""))

    samples: dict[str, list[dict[str, Any]]] = {}
    if sample_size > 0:
        for name in ("orphan", "unclassified", *NEEDS_CORRECTION):
            rows = _rows(
                "SELECT md.id, md.ticker, md.market, md.timeframe, md.ts, md.asset_class,"  # noqa: S608
                f" ac.code AS expected{JOIN} WHERE {CATEGORY_SQL[name]} ORDER BY md.id LIMIT %s",
                [sample_size],
            )
            samples[name] = [{**r, "ts": r["ts"].isoformat()} for r in rows]

    report = AnalyzeReport(
        totals=totals, by_market=by_market, by_asset_class=by_class, by_expected_class=by_expected, samples=samples
    )
    if report.orphan_percent > ORPHAN_WARNING_PERCENT:
        report.warnings.append(
            gettext(
                "%(orphans)s of %(total)s candles (%(percent)s %%) have no symbol: more than %(limit)s %%. "
                "Run symbol sync first; orphans cannot be corrected."
            )
            % {
                "orphans": report.totals.orphan,
                "total": report.totals.total,
                "percent": report.orphan_percent,
                "limit": f"{ORPHAN_WARNING_PERCENT:g}",
            }
        )
    if report.totals.unclassified:
        report.warnings.append(
            gettext("%(count)s candles belong to symbols without an asset class; they are left as they are.")
            % {"count": report.totals.unclassified}
        )
    return report


@dataclass(frozen=True, slots=True)
class PreviewPage:
    scope: str
    page: int
    page_size: int
    total_groups: int
    total_rows: int
    transitions: list[dict[str, Any]]
    groups: list[dict[str, Any]]

    @property
    def pages(self) -> int:
        return -(-self.total_groups // self.page_size) if self.total_groups else 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pages": self.pages}


def _changes_sql(scope: Scope, *, id_high: int | None = None) -> tuple[str, list[Any]]:
    where = f"{SCOPE_SQL[scope]}"
    params: list[Any] = []
    if id_high is not None:
        where += " AND md.id <= %s"
        params.append(id_high)
    return (
        " FROM market_data md JOIN symbols s ON s.id = md.symbol_id"
        f" JOIN asset_classes ac ON ac.id = s.asset_class_id WHERE {where}",
        params,
    )


def correction_preview_page(*, scope: Scope, page: int = 1, page_size: int = 50) -> PreviewPage:
    """The exact changes execute would make now, grouped by (ticker, market,
    from -> to), one page of groups, with totals. Reads only."""

    if page < 1 or not 1 <= page_size <= 1000:
        raise DomainError("page must be >= 1 and page_size between 1 and 1000", code="invalid_page")
    source, params = _changes_sql(scope)
    grouped = (
        "SELECT md.ticker, md.market, md.asset_class AS from_value, ac.code AS to_value,"  # noqa: S608
        f" count(*) AS row_count{source} GROUP BY md.ticker, md.market, md.asset_class, ac.code"
    )
    totals = _rows(f"SELECT count(*) AS groups, coalesce(sum(row_count), 0) AS rows FROM ({grouped}) g", params)[0]  # noqa: S608
    transitions = _rows(
        "SELECT from_value, to_value, count(*) AS groups, sum(row_count) AS rows"  # noqa: S608
        f" FROM ({grouped}) g GROUP BY from_value, to_value ORDER BY rows DESC, from_value, to_value",
        params,
    )
    groups = _rows(
        f"{grouped} ORDER BY md.market, md.ticker, md.asset_class NULLS FIRST LIMIT %s OFFSET %s",
        [*params, page_size, (page - 1) * page_size],
    )
    return PreviewPage(
        scope=str(scope),
        page=page,
        page_size=page_size,
        total_groups=totals["groups"],
        total_rows=int(totals["rows"]),
        transitions=[{**t, "rows": int(t["rows"])} for t in transitions],
        groups=groups,
    )


def rows_needing_change(*, scope: Scope, id_low: int | None = None, id_high: int | None = None) -> int:
    source, params = _changes_sql(scope)
    if id_low is not None:
        source += " AND md.id BETWEEN %s AND %s"
        params += [id_low, id_high]
    return _rows(f"SELECT count(*) AS n{source}", params)[0]["n"]  # noqa: S608


@contextmanager
def hash_joins() -> Iterator[None]:
    """Join correction_backups to market_data by hashing, never by probing the candles once per
    backup row: market_data's id index is BRIN (a probe reads a page range in every partition),
    and the planner, which often sees a run's fresh backups as a single row, would pick the probe.
    The setting lasts until the surrounding transaction (opened here if there is none) ends."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL enable_nestloop = off")
        yield


def rollback_preflight(*, run: CorrectionRun, sample_size: int = 20) -> dict[str, Any]:
    """What a rollback would do now: rows to restore, rows changed again since
    the run (conflicts) and rows deleted since (missing), with samples."""
    with hash_joins():
        return _preflight(run, sample_size)


def _preflight(run: CorrectionRun, sample_size: int) -> dict[str, Any]:
    after = run.rollback_last_id if run.phase == Phase.ROLLING_BACK and run.rollback_last_id is not None else -1
    counts = _rows(
        "SELECT count(*) FILTER (WHERE md.id IS NOT NULL AND md.asset_class IS NOT DISTINCT FROM b.new_value)"
        " AS restorable,"
        " count(*) FILTER (WHERE md.id IS NOT NULL AND md.asset_class IS DISTINCT FROM b.new_value) AS conflicts,"
        " count(*) FILTER (WHERE md.id IS NULL) AS missing"
        " FROM correction_backups b LEFT JOIN market_data md ON md.id = b.market_data_id"
        " WHERE b.run_id = %s AND b.market_data_id > %s",
        [run.pk, after],
    )[0]
    samples = _rows(
        "SELECT b.market_data_id AS id, md.ticker, md.market, b.old_value, b.new_value,"
        " md.asset_class AS current_value"
        " FROM correction_backups b JOIN market_data md ON md.id = b.market_data_id"
        " WHERE b.run_id = %s AND b.market_data_id > %s AND md.asset_class IS DISTINCT FROM b.new_value"
        " ORDER BY b.market_data_id LIMIT %s",
        [run.pk, after, sample_size],
    )
    return {**counts, "conflict_samples": samples}


@dataclass(frozen=True, slots=True)
class RollbackRefusal:
    """Why a run cannot be rolled back; `reason` completes "Cannot be rolled back: …"."""

    code: str
    reason: str


def rollback_refusal(*, run: CorrectionRun) -> RollbackRefusal | None:
    """The one rule for which runs may be rolled back, read by the rollback service
    and by the admin's confirmation page alike. None: it may."""
    if run.phase == Phase.ROLLED_BACK:
        when = (
            f"{timezone.localtime(run.rolled_back_at):%Y-%m-%d %H:%M %Z}"
            if run.rolled_back_at
            else gettext("an unknown date")
        )
        return RollbackRefusal(
            "already_rolled_back",
            gettext("already rolled back on %(when)s by %(who)s")
            % {"when": when, "who": run.rolled_back_by or gettext("unknown")},
        )
    if run.phase in (Phase.ANALYZED, Phase.PREVIEWED):
        return RollbackRefusal("bad_phase", gettext("never executed: there is nothing to roll back"))
    return None


def correction_lock_held() -> bool:
    """Is some session executing or rolling back a correction right now?"""
    return locks.is_held(locks.CORRECTION)


def is_interrupted(run: CorrectionRun) -> bool:
    """Marked running, but no process holds the correction lock: it was killed.
    Execute (or rollback) again to resume it from its last committed batch."""
    if run.phase not in (Phase.EXECUTING, Phase.ROLLING_BACK):
        return False
    return run.status != "running" or not correction_lock_held()


def correction_status(*, run: CorrectionRun) -> dict[str, Any]:
    return {
        "interrupted": is_interrupted(run),
        "run_id": run.pk,
        "phase": run.phase,
        "status": run.status,
        "scope": str(run.scope),
        "only_null": run.only_null,
        "overwrite_mismatched": run.overwrite_mismatched,
        "batch_size": run.batch_size,
        "validate_each_batch": run.validate_each_batch,
        "requested_by": run.requested_by,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "executed_at": run.executed_at,
        "progress_done": run.progress_done,
        "progress_total": run.progress_total,
        "percent": None if run.percent is None else round(run.percent, 2),
        "rate_per_second": run.rate_per_second,
        "eta_seconds": run.eta_seconds,
        "batches_done": run.batches_done,
        "last_id": run.last_id,
        "id_range": [run.id_low, run.id_high],
        "rows_updated": run.rows_updated,
        "rows_restored": run.rows_restored,
        "rollback_conflicts": run.rollback_conflicts,
        "rollback_reason": run.rollback_reason,
        "rolled_back_by": run.rolled_back_by,
        "rolled_back_at": run.rolled_back_at,
        "cancel_requested": run.cancel_requested,
        "error": run.error,
    }


def operational_metrics() -> dict[str, Any]:
    """Run counts by phase and status, rows processed, and the latest figures."""
    by_phase = {r["phase"]: r["n"] for r in _rows("SELECT phase, count(*) AS n FROM correction_runs GROUP BY phase")}
    by_status = {
        r["status"]: r["n"] for r in _rows("SELECT status, count(*) AS n FROM correction_runs GROUP BY status")
    }
    sums = _rows(
        "SELECT coalesce(sum(rows_updated), 0) AS rows_updated, coalesce(sum(rows_restored), 0) AS rows_restored,"
        " avg(extract(epoch FROM finished_at - started_at)) FILTER (WHERE finished_at IS NOT NULL)"
        " AS avg_duration_seconds, max(rate_per_second) AS best_rate_per_second FROM correction_runs"
    )[0]
    latest = CorrectionRun.objects.first()
    return {
        "runs_by_phase": by_phase,
        "runs_by_status": by_status,
        "rows_updated_total": int(sums["rows_updated"]),
        "rows_restored_total": int(sums["rows_restored"]),
        "avg_duration_seconds": None if sums["avg_duration_seconds"] is None else float(sums["avg_duration_seconds"]),
        "best_rate_per_second": sums["best_rate_per_second"],
        "latest_run": correction_status(run=latest) if latest else None,
    }


def correction_health() -> dict[str, Any]:
    """Healthy, degraded (an interrupted or failed run needs an operator) or
    unhealthy (no database)."""
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
    except Exception as exc:  # any failure to reach the database is "down"
        return {"status": "unhealthy", "checks": {"database": {"ok": False, "error": type(exc).__name__}}}
    open_runs = CorrectionRun.objects.filter(phase__in=[Phase.EXECUTING, Phase.ROLLING_BACK])
    interrupted = [run.pk for run in open_runs if is_interrupted(run)]
    latest = CorrectionRun.objects.first()
    last_failed = bool(latest and latest.status == "failed")
    checks = {
        "database": {"ok": True},
        "interrupted_runs": {"ok": not interrupted, "runs": interrupted},
        "last_run": {
            "ok": not last_failed,
            "run_id": latest.pk if latest else None,
            "phase": latest.phase if latest else None,
            "status": latest.status if latest else None,
        },
        "running_now": correction_lock_held(),
    }
    return {"status": "degraded" if interrupted or last_failed else "healthy", "checks": checks}
