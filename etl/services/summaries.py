"""The periodic full recount of the integrity summaries (`etl.summaries`).

Each source's numbers are counted again from its big table and compared with what the
triggers kept; a difference (drift) is logged, counted in a metric, kept on the run
record, shown by health as degraded until a recount finds none, and repaired by
appending the difference as a delta. Each source is recounted in one REPEATABLE READ
transaction, so the recount and the kept numbers are read from the same snapshot and
the repair is exact even while writers go on: their own deltas add up on top.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from django.apps import apps
from django.db import connection, transaction
from django.utils import timezone

from etl import locks
from etl.errors import DomainError
from etl.events import DbCounter, run_kind
from etl.models import RunRecord, RunStatus, SummaryRecount
from etl.progress import Cancelled, ProgressReporter
from etl.queue import queue_on_commit
from etl.summaries import (
    RUNS,
    RUNS_WINDOW_HOURS,
    SummarySource,
    register_summary_source,
    registered_sources,
    runs_summary_sql,
    summary_read,
    window_start,
)

log = logging.getLogger(__name__)

DRIFT_KEPT = 200  # drifted values kept on the run record; every one is logged
CANDLES = "candles"
SYMBOLS = "symbols"

drift_found = DbCounter(
    "mytrader_summary_drift", "Integrity summary values a recount found different from its count", ["source"]
)


@dataclass(frozen=True, slots=True)
class Drift:
    """One kept value that differs from the recount (`kept` includes pending deltas)."""

    source: str
    table: str  # summary | symbol_tallies | unlinked_pairs
    market: str
    metric: str
    bucket: datetime | None
    kept: int
    recounted: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bucket": self.bucket.isoformat() if self.bucket else None}


@dataclass(frozen=True, slots=True)
class SourceRecount:
    compared: int
    drift: list[Drift]
    repaired: int
    seconds: float


@dataclass(frozen=True, slots=True)
class RecountResult:
    run_id: int
    status: str
    drift_count: int
    repaired: bool
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    drift: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------
# The core's sources: candles (market_data) and symbols

# market_data grouped once as the triggers group a statement's rows.
_CANDLE_GROUPS = """
CREATE TEMP TABLE summary_recount_candles ON COMMIT DROP AS
SELECT symbol_id,
       CASE WHEN symbol_id IS NULL THEN market END AS market,
       CASE WHEN symbol_id IS NULL THEN ticker END AS ticker,
       CASE WHEN symbol_id IS NOT NULL THEN asset_class END AS asset_class,
       count(*) AS n
FROM market_data GROUP BY 1, 2, 3, 4
"""
CANDLES_SQL = """
SELECT COALESCE(m.code, g.market, '') AS market,
       integrity_candle_category(g.symbol_id, ac.code, g.asset_class) AS metric,
       NULL::timestamptz AS bucket, sum(g.n) AS value
FROM summary_recount_candles g
LEFT JOIN symbols s ON s.id = g.symbol_id
LEFT JOIN markets m ON m.id = s.market_id
LEFT JOIN asset_classes ac ON ac.id = s.asset_class_id
GROUP BY 1, 2
UNION ALL
SELECT market, 'candles.unlinked_pairs', NULL, count(*) FROM summary_recount_candles WHERE symbol_id IS NULL GROUP BY 1
"""
SYMBOLS_SQL = """
SELECT m.code AS market, f.metric, f.bucket, sum(f.value) AS value
FROM symbols s
JOIN markets m ON m.id = s.market_id
CROSS JOIN LATERAL integrity_symbol_metrics(s) f
GROUP BY 1, 2, 3
"""
# Per-symbol and per-pair tallies: (key..., kept, recounted) where they differ. chr(1)
# stands for a NULL asset class in the join key (FULL JOIN needs an equality).
_TALLY_DRIFT = """
SELECT COALESCE(f.symbol_id, k.symbol_id), COALESCE(f.asset_class, k.asset_class),
       COALESCE(k.n, 0)::bigint, COALESCE(f.n, 0)::bigint
FROM (SELECT symbol_id, asset_class, n FROM summary_recount_candles WHERE symbol_id IS NOT NULL) f
FULL JOIN (
    SELECT symbol_id, asset_class, sum(candles) AS n FROM (
        SELECT symbol_id, asset_class, candles FROM integrity_symbol_tallies
        UNION ALL SELECT symbol_id, asset_class, candles FROM integrity_symbol_tally_deltas
    ) x GROUP BY 1, 2
) k ON k.symbol_id = f.symbol_id AND COALESCE(k.asset_class, chr(1)) = COALESCE(f.asset_class, chr(1))
WHERE COALESCE(k.n, 0) <> COALESCE(f.n, 0)
ORDER BY 1, 2
"""
_PAIR_DRIFT = """
SELECT COALESCE(f.market, k.market), COALESCE(f.ticker, k.ticker), COALESCE(k.n, 0)::bigint, COALESCE(f.n, 0)::bigint
FROM (SELECT market, ticker, n FROM summary_recount_candles WHERE symbol_id IS NULL) f
FULL JOIN (
    SELECT market, ticker, sum(candles) AS n FROM (
        SELECT market, ticker, candles FROM integrity_unlinked_pairs
        UNION ALL SELECT market, ticker, candles FROM integrity_unlinked_pair_deltas
    ) x GROUP BY 1, 2
) k ON k.market = f.market AND k.ticker = f.ticker
WHERE COALESCE(k.n, 0) <> COALESCE(f.n, 0)
ORDER BY 1, 2
"""


def register_core_sources() -> None:
    """Called once from EtlConfig.ready()."""
    register_summary_source(
        SummarySource(CANDLES, "candles.", CANDLES_SQL, "market_data: candles per market by category")
    )
    register_summary_source(SummarySource(SYMBOLS, "symbols.", SYMBOLS_SQL, "symbols per market"))
    register_summary_source(
        SummarySource(
            RUNS,
            "runs.",
            runs_summary_sql(run_tables()),
            "run tables: runs created and failed per kind and hour (the dashboard's last 24 h)",
            window_hours=RUNS_WINDOW_HOURS,
        )
    )


def run_tables() -> list[tuple[str, str]]:
    """(table, kind) of every run table (`etl.models.RunRecord`), by table."""
    return sorted(
        (model._meta.db_table, run_kind(model))
        for model in apps.get_models()
        if issubclass(model, RunRecord) and not model._meta.proxy
    )


# ---------------------------------------------------------------------------
# Compare and repair


def _kept(source: SummarySource, since: datetime | None) -> dict[tuple, int]:
    values = summary_read(source.prefix, fold=False, buckets=True)
    return {
        (r["market"], r["metric"], r["bucket"]): r["value"]
        for r in values.rows()
        if since is None or r["bucket"] is None or r["bucket"] >= since
    }


def _order(key: tuple) -> tuple:
    market, metric, bucket = key
    return (metric, market, bucket is not None, bucket.timestamp() if bucket else 0.0)


def _compare(source: SummarySource, cur, *, repair: bool) -> tuple[int, list[Drift], int]:
    """Recount `source`, compare with the kept numbers, append the differences as deltas."""
    since = window_start(source.window_hours) if source.window_hours else None
    kept = _kept(source, since)
    cur.execute(source.sql, {"since": since})
    fresh = {(market, metric, bucket): int(value) for market, metric, bucket, value in cur.fetchall()}
    drift = [
        Drift(source.name, "summary", key[0], key[1], key[2], kept.get(key, 0), fresh.get(key, 0))
        for key in sorted(set(kept) | set(fresh), key=_order)
        if _differs(key[1], kept.get(key, 0), fresh.get(key, 0))
    ]
    if repair and drift:
        rows = [
            (d.market, d.metric, d.bucket, d.recounted if d.metric.endswith(".max") else d.recounted - d.kept)
            for d in drift
        ]
        cur.executemany(
            "INSERT INTO integrity_summary_deltas (market, metric, bucket, value) VALUES (%s, %s, %s, %s)", rows
        )
    return len(set(kept) | set(fresh)), drift, len(drift) if repair else 0


def _differs(metric: str, kept: int, recounted: int) -> bool:
    """A ".max" is the largest value recorded in its bucket, rows deleted since included: only
    a recount above it is drift (and a max delta repairs it)."""
    return recounted > kept if metric.endswith(".max") else kept != recounted


def _compare_tallies(cur, *, repair: bool) -> tuple[list[Drift], int]:
    """The per-symbol and per-pair tallies against the grouped candles."""
    cur.execute(_TALLY_DRIFT)
    tallies = cur.fetchall()
    cur.execute(_PAIR_DRIFT)
    pairs = cur.fetchall()
    if repair and tallies:
        cur.executemany(
            "INSERT INTO integrity_symbol_tally_deltas (symbol_id, asset_class, candles) VALUES (%s, %s, %s)",
            [(symbol_id, asset_class, fresh - kept) for symbol_id, asset_class, kept, fresh in tallies],
        )
    if repair and pairs:
        cur.executemany(
            "INSERT INTO integrity_unlinked_pair_deltas (market, ticker, candles) VALUES (%s, %s, %s)",
            [(market, ticker, fresh - kept) for market, ticker, kept, fresh in pairs],
        )
    drift = [Drift(CANDLES, "symbol_tallies", "", f"symbol {s} class {c!r}", None, k, f) for s, c, k, f in tallies]
    drift += [Drift(CANDLES, "unlinked_pairs", m, f"ticker {t}", None, k, f) for m, t, k, f in pairs]
    return drift, (len(tallies) + len(pairs)) if repair else 0


def _snapshot() -> None:
    """Read the recount and the kept numbers from one snapshot (unless already inside a
    transaction, as in a test, whose own snapshot rules)."""
    if connection.in_atomic_block and not connection.savepoint_ids:
        with connection.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


def _recount_source(source: SummarySource, *, repair: bool) -> SourceRecount:
    started = timezone.now()
    with transaction.atomic(), connection.cursor() as cur:
        _snapshot()
        extra: list[Drift] = []
        extra_repaired = 0
        if source.name == CANDLES:
            cur.execute(_CANDLE_GROUPS)
            # Tallies first: repaired pairs change the pending unlinked-pair transitions
            # that the kept `candles.unlinked_pairs` includes.
            extra, extra_repaired = _compare_tallies(cur, repair=repair)
        compared, drift, repaired = _compare(source, cur, repair=repair)
        if source.name == CANDLES:
            cur.execute("DROP TABLE summary_recount_candles")
    seconds = (timezone.now() - started).total_seconds()
    return SourceRecount(compared, extra + drift, extra_repaired + repaired, round(seconds, 3))


def _purge_zero_tallies() -> None:
    """Tallies that reached zero are no longer needed (a fold leaves them in place)."""
    with transaction.atomic(), connection.cursor() as cur:
        locks.xact_lock(locks.SUMMARY_FOLD)
        cur.execute("DELETE FROM integrity_symbol_tallies WHERE candles = 0")
        cur.execute("DELETE FROM integrity_unlinked_pairs WHERE candles = 0")
        cur.execute("DELETE FROM integrity_summary WHERE value = 0 AND metric NOT LIKE '%.max'")


# ---------------------------------------------------------------------------
# The run


def _sources(names: list[str] | None) -> list[SummarySource]:
    known = registered_sources()
    unknown = sorted(set(names or ()) - set(known))
    if unknown:
        raise DomainError(f"sources: unknown {unknown}; known: {sorted(known)}", code="unknown_source")
    return [known[name] for name in sorted(known) if not names or name in names]


def summary_recount_create(
    *, requested_by: str = "", repair: bool = True, sources: list[str] | None = None
) -> SummaryRecount:
    """A queued recount run (bad source names are refused here)."""
    _sources(sources)
    return SummaryRecount.objects.create(requested_by=requested_by, repair=repair, sources=list(sources or []))


def summary_recount_queue(*, requested_by: str = "", repair: bool = True, sources: list[str] | None = None):
    """Create a recount run and hand it to the workers when the transaction commits."""
    run = summary_recount_create(requested_by=requested_by, repair=repair, sources=sources)
    queue_on_commit("etl.tasks.summary_recount_execute", run.pk, group="etl")
    return run


def summary_recount_cancel(*, run: SummaryRecount) -> SummaryRecount:
    """Ask a queued or running recount to stop (between sources); a finished one is left as it is."""
    SummaryRecount.objects.filter(pk=run.pk, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).update(
        cancel_requested=True
    )
    run.refresh_from_db()
    return run


def summary_recount(
    *,
    run: SummaryRecount | None = None,
    requested_by: str = "",
    repair: bool = True,
    sources: list[str] | None = None,
    bar: bool = False,
) -> RecountResult:
    """Recount every summary source (or the named ones) from its big table, one
    transaction each; record, log and count the drift, repair it when `repair`."""
    run = run or summary_recount_create(requested_by=requested_by, repair=repair, sources=sources)
    chosen = _sources(run.sources or None)
    if run.cancel_requested:
        return _finish(run, {}, status=RunStatus.CANCELLED, error="")
    SummaryRecount.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, started_at=timezone.now(), error="")
    results: dict[str, SourceRecount] = {}
    status, error = RunStatus.SUCCEEDED, ""
    try:
        with ProgressReporter(run, total=len(chosen), label="summary recount", bar=bar) as progress:
            for source in chosen:
                results[source.name] = _recount_source(source, repair=run.repair)
                progress.advance(1)
        if run.repair:
            _purge_zero_tallies()
    except Cancelled:
        status = RunStatus.CANCELLED
    except Exception as exc:
        status, error = RunStatus.FAILED, str(exc)
        log.exception("summary recount %s failed", run.pk)
    return _finish(run, results, status=status, error=error)


def _finish(run: SummaryRecount, results: dict[str, SourceRecount], *, status: str, error: str) -> RecountResult:
    drift = [d for r in results.values() for d in r.drift]
    for d in drift:
        log.warning(
            "summary drift: %s %s %s %s bucket=%s kept=%s recounted=%s",
            d.source,
            d.table,
            d.market,
            d.metric,
            d.bucket,
            d.kept,
            d.recounted,
        )
        # The counter is appended as a delta too: it commits with the run record.
    for name, r in results.items():
        if r.drift:
            drift_found.labels(source=name).inc(len(r.drift))
    per_source = {
        name: {"compared": r.compared, "drift": len(r.drift), "repaired": r.repaired, "seconds": r.seconds}
        for name, r in results.items()
    }
    repaired = run.repair and bool(drift) and status == RunStatus.SUCCEEDED
    kept = [d.to_dict() for d in drift[:DRIFT_KEPT]]
    SummaryRecount.objects.filter(pk=run.pk).update(
        status=status,
        finished_at=timezone.now(),
        drift_count=len(drift),
        drift=kept,
        repaired=repaired,
        result=per_source,
        error=error,
    )
    return RecountResult(run.pk, status, len(drift), repaired, per_source, kept)


def summary_drift_open() -> SummaryRecount | None:
    """The newest finished recount when it found drift (health is degraded until a
    later recount finds none), else None."""
    last = (
        SummaryRecount.objects.filter(status=RunStatus.SUCCEEDED, finished_at__isnull=False)
        .order_by("-finished_at", "-id")
        .first()
    )
    return last if last is not None and last.drift_count else None


def summary_drift_health(now: datetime) -> dict[str, Any]:
    """Health check: degraded while the newest recount's drift stands (a clean recount clears it)."""
    open_drift = summary_drift_open()
    if open_drift is None:
        return {"ok": True}
    return {
        "ok": False,
        "recount": open_drift.pk,
        "finished_at": open_drift.finished_at.isoformat(),
        "drift": open_drift.drift_count,
        "repaired": open_drift.repaired,
        "reason": f"summary recount #{open_drift.pk} found {open_drift.drift_count} value(s) that differed from the "
        "big tables" + (" (repaired)" if open_drift.repaired else "") + ": a writer bypassed the summary triggers;"
        " see the recount's drift, then recount again to clear this",
    }


def summary_check(*, sources: list[str] | None = None) -> list[Drift]:
    """The drift a recount would find now, without recording or repairing anything."""
    return [d for source in _sources(sources) for d in _recount_source(source, repair=False).drift]


def summary_fill(*, sources: list[str]) -> None:
    """Count the named sources from scratch into empty summaries (the data migrations'
    initial fill): a recount that repairs from zero, without a run record."""
    for source in _sources(sources):
        _recount_source(source, repair=True)
