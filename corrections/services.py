"""Writes and runs of the asset-class correction.

analyze -> preview -> execute (batches with backup) -> validate, or rollback.
Admin actions, API views, the command, the django-q2 tasks and the pipeline
step all call these functions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max, Min, Q
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext

from corrections import metrics
from corrections.models import CorrectionRun, Phase, Scope
from corrections.selectors import (
    SCOPE_SQL,
    AnalyzeReport,
    PreviewPage,
    asset_class_analysis,
    candidates_in_scope,
    category_totals,
    correction_lock_held,
    correction_preview_page,
    hash_joins,
    is_interrupted,
    operational_metrics,
    rollback_refusal,
    rows_needing_change,
    scope_for,
)
from etl import locks
from etl.alerts import run_failure_notify
from etl.errors import ConflictError, DomainError
from etl.models import DataCorrection, MarketData, RunStatus, status_word
from etl.progress import Cancelled, ProgressReporter
from etl.queue import queue_on_commit
from etl.recovery import connection_lost, connection_reset, write_after_reconnect
from etl.services.partitions import brin_summarize

MAX_BATCH_SIZE = 1_000_000
MAX_CONFLICT_SAMPLES = 50

# Back up, then change, in one transaction per id range. FOR UPDATE keeps a
# concurrent writer off the rows between the two statements, so the update
# below changes exactly the rows just backed up. The update takes its values
# from the backup rows (which were read FROM symbols) rather than joining
# symbols again: that makes "rows changed = rows backed up" hold by
# construction even if a symbol's class changes mid-batch.
BACKUP_SQL = (
    "INSERT INTO correction_backups"
    " (run_id, market_data_id, old_value, old_updated_at, new_value, new_updated_at)"
    " SELECT %s, md.id, md.asset_class, md.updated_at, ac.code, now()"
    " FROM market_data md JOIN symbols s ON s.id = md.symbol_id"
    " JOIN asset_classes ac ON ac.id = s.asset_class_id"
    " WHERE md.id BETWEEN %s AND %s AND {scope} FOR UPDATE OF md"
)
APPLY_SQL = (
    "UPDATE market_data md SET asset_class = b.new_value, updated_at = b.new_updated_at"
    " FROM correction_backups b"
    " WHERE b.run_id = %s AND b.market_data_id BETWEEN %s AND %s AND md.id BETWEEN %s AND %s"
    " AND md.id = b.market_data_id"
)
AUDIT_SQL = (
    "INSERT INTO data_corrections"
    " (kind, run_ref, table_name, ticker, market, field, old_value, new_value, row_count, detail,"
    " created_by, created_at)"
    " SELECT 'asset_class_correction', %s, 'market_data', md.ticker, md.market, 'asset_class',"
    " b.old_value, b.new_value, count(*), jsonb_build_object('run_id', %s, 'scope', %s), %s, now()"
    " FROM correction_backups b JOIN market_data md ON md.id = b.market_data_id"
    " WHERE b.run_id = %s GROUP BY md.ticker, md.market, b.old_value, b.new_value"
)
# The repeated `md.id BETWEEN` bounds the candles' side too: market_data's id index is a BRIN
# index per partition, which the planner can use only for a range on md.id itself.
# Rollback, per range of backed-up ids. A row "changed again" is one whose
# asset class is no longer what the run wrote: a conflict.
CONFLICT_GROUPS_SQL = (
    "SELECT md.ticker, md.market, md.asset_class AS current_value, b.old_value, count(*) AS n"
    " FROM correction_backups b JOIN market_data md ON md.id = b.market_data_id"
    " WHERE b.run_id = %s AND b.market_data_id BETWEEN %s AND %s AND md.id BETWEEN %s AND %s"
    " AND md.asset_class IS DISTINCT FROM b.new_value"
    " GROUP BY md.ticker, md.market, md.asset_class, b.old_value"
)
CONFLICT_SAMPLES_SQL = (
    "SELECT b.market_data_id, md.ticker, md.market, b.old_value, b.new_value, md.asset_class"
    " FROM correction_backups b JOIN market_data md ON md.id = b.market_data_id"
    " WHERE b.run_id = %s AND b.market_data_id BETWEEN %s AND %s AND md.id BETWEEN %s AND %s"
    " AND md.asset_class IS DISTINCT FROM b.new_value ORDER BY b.market_data_id LIMIT %s"
)
MISSING_SQL = (
    "SELECT count(*) FROM correction_backups b"
    " WHERE b.run_id = %s AND b.market_data_id BETWEEN %s AND %s"
    " AND NOT EXISTS (SELECT 1 FROM market_data md WHERE md.id = b.market_data_id AND md.id BETWEEN %s AND %s)"
)
# updated_at goes back to its old value only when nobody touched the row
# after the run; otherwise the later touch is kept.
RESTORE_SQL = (
    "WITH restored AS ("
    " UPDATE market_data md SET asset_class = b.old_value,"
    " updated_at = CASE WHEN md.updated_at = b.new_updated_at THEN b.old_updated_at ELSE md.updated_at END"
    " FROM correction_backups b"
    " WHERE b.run_id = %s AND b.market_data_id BETWEEN %s AND %s AND md.id BETWEEN %s AND %s"
    " AND md.id = b.market_data_id"
    " AND md.asset_class IS NOT DISTINCT FROM b.new_value"
    " RETURNING md.ticker, md.market, b.new_value, b.old_value)"
    " SELECT ticker, market, new_value, old_value, count(*) FROM restored"
    " GROUP BY ticker, market, new_value, old_value"
)
FORCE_RESTORE_SQL = (
    "UPDATE market_data md SET asset_class = b.old_value, updated_at = now()"
    " FROM correction_backups b"
    " WHERE b.run_id = %s AND b.market_data_id BETWEEN %s AND %s AND md.id BETWEEN %s AND %s"
    " AND md.id = b.market_data_id"
    " AND md.asset_class IS DISTINCT FROM b.new_value"
)


# ---------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class ExecuteResult:
    run_id: int
    status: str
    phase: str
    resumed: bool
    rows_updated: int
    rows_backed_up: int
    batches: int
    seconds: float
    rate_per_second: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class ValidationResult:
    run_id: int
    ok: bool
    checks: list[Check]
    warnings: list[str]
    quality_score: float
    needing_correction: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RollbackResult:
    run_id: int
    status: str
    phase: str
    rows_restored: int
    conflicts: int
    conflicts_restored: int
    missing: int
    conflict_samples: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- helpers


@contextmanager
def _exclusive() -> Iterator[None]:
    """One execute or rollback at a time, across processes: two runs writing the
    same candles would back up each other's values. A session lock dies with its
    connection, so a killed process never leaves it behind."""
    with locks.session_lock(locks.CORRECTION) as acquired:
        if not acquired:
            raise ConflictError(
                gettext("Another correction is executing or rolling back right now; try again when it ends."),
                code="busy",
            )
        yield


def _save(run: CorrectionRun, **fields: Any) -> None:
    """Write only the named fields (a full save could overwrite progress or
    cancel_requested written meanwhile by another process)."""
    for name, value in fields.items():
        setattr(run, name, value)
    CorrectionRun.objects.filter(pk=run.pk).update(**fields)


def _batch_end(*, table_sql: str, params: list[Any], after: int, size: int, ceiling: int) -> int:
    """The id `size` rows after `after` (capped at `ceiling`): batches hold
    `size` rows however sparse the ids are."""
    with connection.cursor() as cur:
        cur.execute(table_sql, [*params, after, size - 1])
        row = cur.fetchone()
    return min(row[0], ceiling) if row else ceiling


NEXT_BACKUP_SQL = (
    "SELECT market_data_id FROM correction_backups WHERE run_id = %s AND market_data_id > %s"
    " ORDER BY market_data_id OFFSET %s LIMIT 1"
)


def _check_cancel(run: CorrectionRun) -> None:
    if CorrectionRun.objects.filter(pk=run.pk, cancel_requested=True).exists():
        raise Cancelled(f"correction {run.pk} was cancelled")


def _notify_failed(run: CorrectionRun, *, action: str, exc: BaseException) -> None:
    """Mail the admins (and Slack) that this run's execute or rollback failed, with
    the cause its record shows (see `_failed`)."""
    cause = run.error or str(exc)
    detail = cause.strip().splitlines()[0] if cause.strip() else type(exc).__name__
    run_failure_notify(kind="correction", run_id=run.pk, summary=f"Correction run #{run.pk} failed: {action}: {detail}")


def _record_analysis(report: AnalyzeReport) -> None:
    metrics.data_quality_score.set(report.quality_score)
    metrics.records_needing_correction.set(report.totals.needing_correction)


def _validate_options(*, batch_size: int) -> None:
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise DomainError(
            gettext("batch_size must be between 1 and %(most)s, got %(given)s")
            % {"most": number_format(MAX_BATCH_SIZE, force_grouping=True), "given": batch_size},
            code="invalid_batch",
        )


# ---------------------------------------------------------------- analyze / preview


def correction_analyze(*, sample_size: int = 5) -> AnalyzeReport:
    """Read-only analysis of market_data's asset classes; updates the gauges."""
    metrics.operations_started.labels("analyze").inc()
    started = time.monotonic()
    report = asset_class_analysis(sample_size=sample_size)
    _record_analysis(report)
    metrics.operation_duration.labels("analyze").observe(time.monotonic() - started)
    metrics.operations_completed.labels("analyze", "succeeded").inc()
    return report


def correction_run_create(
    *,
    requested_by: str,
    only_null: bool = False,
    overwrite_mismatched: bool = False,
    batch_size: int = 50_000,
    validate_each_batch: bool = False,
    sample_size: int = 5,
) -> CorrectionRun:
    """A new run in phase `analyzed`, holding its options and the analysis.
    Writes only the run record."""
    scope_for(only_null=only_null, overwrite_mismatched=overwrite_mismatched)
    _validate_options(batch_size=batch_size)
    report = correction_analyze(sample_size=sample_size)
    return CorrectionRun.objects.create(
        requested_by=requested_by,
        only_null=only_null,
        overwrite_mismatched=overwrite_mismatched,
        batch_size=batch_size,
        validate_each_batch=validate_each_batch,
        analyze_report=report.to_dict(),
        phase=Phase.ANALYZED,
        status=RunStatus.QUEUED,
    )


def correction_preview(
    *, run: CorrectionRun | None = None, scope: Scope | None = None, page: int = 1, page_size: int = 50
) -> PreviewPage:
    """The exact changes, grouped and paged. Changes no candle; with a run in
    phase analyzed/previewed it stores the totals on the run (-> previewed)."""
    if run is None and scope is None:
        raise DomainError(gettext("preview needs a run or a scope"), code="invalid_options")
    metrics.operations_started.labels("preview").inc()
    preview = correction_preview_page(scope=run.scope if run else scope, page=page, page_size=page_size)
    if run is not None and run.phase in (Phase.ANALYZED, Phase.PREVIEWED):
        summary = {k: v for k, v in preview.to_dict().items() if k not in ("groups", "page")}
        _save(run, phase=Phase.PREVIEWED, preview_report={**summary, "first_groups": preview.groups[:20]})
    metrics.operations_completed.labels("preview", "succeeded").inc()
    return preview


# ---------------------------------------------------------------- execute


def _execute_batch(run: CorrectionRun, low: int, high: int) -> int:
    """Back up and correct candles low..high in one transaction; returns rows changed."""
    scope_sql = SCOPE_SQL[run.scope]
    with transaction.atomic():
        with connection.cursor() as cur:
            # The scope fragment is one of this app's constants.
            cur.execute(BACKUP_SQL.format(scope=scope_sql), [run.pk, low, high])
            backed_up = cur.rowcount
            with hash_joins():
                cur.execute(APPLY_SQL, [run.pk, low, high, low, high])
                changed = cur.rowcount
        if changed != backed_up:
            raise RuntimeError(f"batch {low}..{high}: {backed_up} rows backed up but {changed} changed")
        if run.validate_each_batch:
            left = rows_needing_change(scope=run.scope, id_low=low, id_high=high)
            if left:
                raise DomainError(
                    gettext(
                        "validation after batch %(low)s..%(high)s failed: %(left)s candles still need correction; "
                        "the batch was rolled back"
                    )
                    % {"low": low, "high": high, "left": left},
                    code="batch_validation_failed",
                )
        # The resume point is committed with the batch it describes.
        CorrectionRun.objects.filter(pk=run.pk).update(
            last_id=high,
            batches_done=F("batches_done") + 1,
            rows_updated=F("rows_updated") + changed,
            progress_done=F("rows_updated") + changed,
        )
    run.last_id = high
    run.batches_done += 1
    run.rows_updated += changed
    return changed


class Withdrawn(Exception):
    """A queued execute was cancelled before its worker started it."""


def _start_save(run: CorrectionRun, *, queued: bool, **fields: Any) -> None:
    """Mark the run running. From the queue, only while it is still queued: an operator's
    cancel (`correction_cancel`) may have withdrawn it since it was queued, up to this very
    statement; after it, a cancel stops the run after its current batch."""
    if not queued:
        _save(run, **fields)
    elif CorrectionRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(**fields):
        for name, value in fields.items():
            setattr(run, name, value)
    else:
        run.refresh_from_db()
        raise Withdrawn


def _start_execute(run: CorrectionRun, *, queued: bool = False) -> bool:
    """Move the run into `executing` (or resume it); returns whether it resumed."""
    if queued and run.status != RunStatus.QUEUED:
        raise Withdrawn
    if run.phase == Phase.EXECUTING:
        brin_summarize(table="market_data")
        _start_save(run, queued=queued, status=RunStatus.RUNNING, error="", cancel_requested=False, finished_at=None)
        return True
    if run.phase not in (Phase.ANALYZED, Phase.PREVIEWED):
        raise ConflictError(
            gettext("Correction %(run)s is %(phase)s: only an analyzed, previewed or interrupted run can execute.")
            % {"run": run.pk, "phase": run.get_phase_display()},
            code="bad_phase",
        )
    busy = CorrectionRun.objects.filter(phase__in=[Phase.EXECUTING, Phase.ROLLING_BACK]).exclude(pk=run.pk).first()
    if busy:
        raise ConflictError(
            gettext(
                "Correction %(run)s is %(phase)s and was interrupted: resume it or roll it back before starting "
                "another."
            )
            % {"run": busy.pk, "phase": busy.get_phase_display()},
            code="interrupted_run",
        )
    # The batches find candles by id range through BRIN: summarize what the import just wrote.
    brin_summarize(table="market_data")
    bounds = MarketData.objects.aggregate(low=Min("id"), high=Max("id"))
    low, high = bounds["low"] or 0, bounds["high"] or -1
    total = rows_needing_change(scope=run.scope, id_low=low, id_high=high) if high >= low else 0
    _start_save(
        run,
        queued=queued,
        phase=Phase.EXECUTING,
        status=RunStatus.RUNNING,
        started_at=timezone.now(),
        finished_at=None,
        id_low=low,
        id_high=high,
        last_id=low - 1,
        progress_total=total,
        progress_done=0,
        error="",
        cancel_requested=False,
    )
    return False


def correction_execute(*, run: CorrectionRun, bar: bool = False, queued: bool = False) -> ExecuteResult:
    """Back up, then set market_data.asset_class from symbols, batch by batch.
    Each batch is its own transaction, so a crash loses at most one batch of
    work and the run resumes from its last committed id. Cancel is honoured
    between batches; the run stays `executing` (resumable) when cancelled.
    A run refused before it starts (another is active) is not left `queued`:
    it is marked failed with the reason. `queued`: the worker of `correction_execute_queue`,
    which leaves a run an operator cancelled before it started as it is."""
    try:
        return _execute_exclusively(run, bar=bar, queued=queued)
    except ConflictError as exc:
        _record_refusal(run, exc)
        raise


def _record_refusal(run: CorrectionRun, exc: ConflictError) -> None:
    now = timezone.now()
    CorrectionRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
        status=RunStatus.FAILED, error=f"refused: {exc.message}"[:2000], finished_at=now
    )


def _failed(run: CorrectionRun, exc: BaseException) -> None:
    """Mark the run failed with the cause, on a new connection if its own died
    (a PostgreSQL restart): never left `running` with an empty error. A lost
    connection is named as such, with where running it again resumes."""
    lost = connection_lost(exc)
    if lost and run.phase == Phase.ROLLING_BACK:
        error = f"{lost}; roll it back again to resume after backup id {run.rollback_last_id}"
    elif lost:
        error = f"{lost}; execute it again to resume after id {run.last_id}"
    else:
        error = str(exc) or type(exc).__name__
    error = error[:2000]
    fields = {"status": RunStatus.FAILED, "error": error, "finished_at": timezone.now()}
    write_after_reconnect(partial(_save, run, **fields), what=f"the failure of correction {run.pk}")


def _execute_exclusively(run: CorrectionRun, *, bar: bool, queued: bool) -> ExecuteResult:
    started = time.monotonic()
    with _exclusive():
        run.refresh_from_db()
        try:
            resumed = _start_execute(run, queued=queued)
        except Withdrawn:
            return _result(run, resumed=False, seconds=0.0)
        metrics.operations_started.labels("execute").inc()
        done_before = run.rows_updated
        reporter = ProgressReporter(run, total=run.progress_total, label=f"correction {run.pk}", bar=bar)
        reporter.done = run.rows_updated
        result = RunStatus.SUCCEEDED
        try:
            while run.last_id < run.id_high:
                _check_cancel(run)
                # A window of batch_size ids: market_data has no ordered id index to count rows
                # by (docs/storage.md). Ids have gaps (an ON CONFLICT insert uses some up), so a
                # window holds at most batch_size rows.
                high = min(run.last_id + run.batch_size, run.id_high)
                low = run.last_id + 1
                reporter.advance(_execute_batch(run, low, high), check_cancel=False)
        except Cancelled:
            result = RunStatus.CANCELLED
        except BaseException as exc:
            connection_reset()
            reporter.close_quietly()
            _failed(run, exc)
            metrics.operations_completed.labels("execute", "failed").inc()
            _notify_failed(run, action="execute", exc=exc)
            raise
        reporter.close()
        elapsed = time.monotonic() - started
        rate = round((run.rows_updated - done_before) / elapsed, 1) if elapsed > 0 else 0.0
        if result == RunStatus.CANCELLED:
            _save(run, status=RunStatus.CANCELLED, finished_at=timezone.now(), rate_per_second=rate)
        else:
            with hash_joins():
                with connection.cursor() as cur:
                    cur.execute(AUDIT_SQL, [run.run_ref, run.pk, str(run.scope), run.requested_by, run.pk])
                _save(
                    run,
                    phase=Phase.EXECUTED,
                    status=RunStatus.SUCCEEDED,
                    executed_at=timezone.now(),
                    finished_at=timezone.now(),
                    rate_per_second=rate,
                    progress_done=run.rows_updated,
                )
        metrics.records_processed.labels("execute").inc(run.rows_updated - done_before)
        metrics.operation_duration.labels("execute").observe(elapsed)
        metrics.operations_completed.labels("execute", str(result)).inc()
        return _result(run, resumed=resumed, seconds=elapsed)


def _result(run: CorrectionRun, *, resumed: bool, seconds: float) -> ExecuteResult:
    return ExecuteResult(
        run_id=run.pk,
        status=str(run.status),
        phase=str(run.phase),
        resumed=resumed,
        rows_updated=run.rows_updated,
        rows_backed_up=run.rows_backed_up,
        batches=run.batches_done,
        seconds=round(seconds, 3),
        rate_per_second=run.rate_per_second,
    )


def correction_cancel(*, run: CorrectionRun) -> CorrectionRun:
    """Ask a running execute or rollback to stop after its current batch. One whose
    process is gone (no session holds the correction lock) is cancelled at once, in
    its phase: executing (rolling back) it again resumes it. An execute queued for a
    worker and not started yet is withdrawn at once: its worker leaves it as it is."""
    requested = Q(phase=Phase.EXECUTING) | Q(phase__in=[Phase.ANALYZED, Phase.PREVIEWED], started_at__isnull=False)
    if CorrectionRun.objects.filter(requested, pk=run.pk, status=RunStatus.QUEUED).update(
        status=RunStatus.CANCELLED,
        finished_at=timezone.now(),
        error="cancelled by an operator before its worker started it",
    ):
        run.refresh_from_db()
        return run
    updated = CorrectionRun.objects.filter(
        pk=run.pk, phase__in=[Phase.EXECUTING, Phase.ROLLING_BACK], status__in=[RunStatus.RUNNING, RunStatus.QUEUED]
    ).update(cancel_requested=True)
    if not updated:
        raise ConflictError(
            gettext("Correction %(run)s is not running; there is nothing to cancel.") % {"run": run.pk},
            code="not_running",
        )
    run.refresh_from_db()
    if run.status == RunStatus.RUNNING and is_interrupted(run):
        # the lock is taken before a run is marked running: running without it, its process died
        CorrectionRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
            status=RunStatus.CANCELLED,
            finished_at=timezone.now(),
            error="cancelled by an operator; its process had stopped (killed, or its database connection lost)",
        )
        run.refresh_from_db()
    return run


def correction_execute_queue(*, run: CorrectionRun) -> CorrectionRun:
    """Queue execute on a django-q2 worker once the caller's transaction commits.
    Refused (409 naming the active run) while another run executes, rolls back
    or waits to execute: of many requests at once exactly one is queued, and a
    refused run that never started is marked cancelled with the reason."""
    with transaction.atomic():
        locks.xact_lock(locks.CORRECTION_QUEUE)  # until commit: concurrent requests see each other's mark
        run.refresh_from_db()
        if run.phase not in (Phase.ANALYZED, Phase.PREVIEWED, Phase.EXECUTING):
            raise ConflictError(
                gettext("Correction %(run)s is %(phase)s and cannot execute.")
                % {"run": run.pk, "phase": run.get_phase_display()},
                code="bad_phase",
            )
        # A run still marked running is fine to queue once its process is gone (killed): that is a resume.
        if run.status == RunStatus.RUNNING and not is_interrupted(run):
            raise ConflictError(gettext("Correction %(run)s is already running.") % {"run": run.pk}, code="busy")
        active = _active_run(exclude=run)
        if active is None:
            fresh = run.phase in (Phase.ANALYZED, Phase.PREVIEWED)
            # started_at on a fresh run marks its execute as requested (see _active_run)
            _save(run, status=RunStatus.QUEUED, **({"started_at": timezone.now()} if fresh else {}))
            queue_on_commit("corrections.tasks.correction_execute", run.pk, group="corrections")
            return run
    refusal = ConflictError(
        gettext(
            "Correction %(run)s is %(phase)s (%(status)s): wait for it, resume it or roll it back before executing "
            "another."
        )
        % {"run": active.pk, "phase": active.get_phase_display(), "status": status_word(active.status)},
        code="busy",
    )
    if run.phase in (Phase.ANALYZED, Phase.PREVIEWED) and run.started_at is None:
        _save(run, status=RunStatus.CANCELLED, error=f"not executed: {refusal.message}", finished_at=timezone.now())
    raise refusal


def _active_run(*, exclude: CorrectionRun) -> CorrectionRun | None:
    """The run an execute must wait for: one executing or rolling back (running,
    queued to resume, or interrupted), or one whose execute is queued (a fresh
    run marked by its started_at; a mark older than Q_RETRY is a lost task)."""
    lost = timezone.now() - timedelta(seconds=settings.Q_CLUSTER.get("retry", 3900))
    waiting = Q(phase__in=[Phase.ANALYZED, Phase.PREVIEWED], status=RunStatus.QUEUED, started_at__gt=lost)
    active = Q(phase__in=[Phase.EXECUTING, Phase.ROLLING_BACK])
    return CorrectionRun.objects.exclude(pk=exclude.pk).filter(active | waiting).order_by("id").first()


@dataclass(frozen=True, slots=True)
class SweepResult:
    runs_failed: tuple[int, ...]


def correction_interrupted_sweep() -> SweepResult:
    """Mark failed, with the reason, every run still `running` whose process is
    gone (killed, or its connection lost): no session holds the correction lock.
    Each stays in its phase, so executing (or rolling back) it again resumes it
    from its last committed batch. Run every minute by a django-q2 schedule."""
    if correction_lock_held():
        return SweepResult(runs_failed=())  # a live execute or rollback: the running run is its
    stopped = []
    candidates = CorrectionRun.objects.filter(
        phase__in=[Phase.EXECUTING, Phase.ROLLING_BACK], status=RunStatus.RUNNING
    ).values_list("pk", "phase", "last_id", "rollback_last_id")
    for pk, phase, last_id, rollback_last_id in candidates:
        verb, last = ("rollback", rollback_last_id) if phase == Phase.ROLLING_BACK else ("execute", last_id)
        error = (
            f"its process stopped mid-run (killed, or its database connection lost) after id {last}; "
            f"{verb} it again to resume from there"
        )
        # conditional: a worker that took the lock meanwhile has set its own status
        if not correction_lock_held() and CorrectionRun.objects.filter(pk=pk, status=RunStatus.RUNNING).update(
            status=RunStatus.FAILED, error=error, finished_at=timezone.now()
        ):
            stopped.append(pk)
    return SweepResult(runs_failed=tuple(stopped))


def correction_rollback_queue(
    *, run: CorrectionRun, reason: str, requested_by: str, force: bool = False
) -> CorrectionRun:
    """Queue `correction_rollback` on a django-q2 worker once the caller's
    transaction commits; what would refuse it there is refused here first."""
    if not (reason or "").strip():
        raise DomainError(gettext("A rollback needs a reason."), code="reason_required")
    refusal = rollback_refusal(run=run)
    if refusal is not None:
        raise ConflictError(
            gettext("Correction %(run)s: %(reason)s.") % {"run": run.pk, "reason": refusal.reason}, code=refusal.code
        )
    queue_on_commit(
        "corrections.tasks.correction_rollback", run.pk, reason.strip(), requested_by, force, group="corrections"
    )
    return run


# ---------------------------------------------------------------- validate


def correction_validate(*, run: CorrectionRun) -> ValidationResult:
    """Check the post-conditions of an executed run: nothing left in its scope
    where a symbol has a class, and rows changed = rows backed up. Marks the
    run validated when they hold."""
    if run.phase not in (Phase.EXECUTED, Phase.VALIDATED):
        raise ConflictError(
            gettext("Correction %(run)s is %(phase)s: only an executed run can be validated.")
            % {"run": run.pk, "phase": run.get_phase_display()},
            code="bad_phase",
        )
    metrics.operations_started.labels("validate").inc()
    started = time.monotonic()
    left = rows_needing_change(scope=run.scope, id_low=run.id_low, id_high=run.id_high)
    backed_up = run.rows_backed_up
    with hash_joins(), connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM correction_backups b JOIN market_data md ON md.id = b.market_data_id"
            " WHERE b.run_id = %s AND md.asset_class IS DISTINCT FROM b.new_value",
            [run.pk],
        )
        changed_since = cur.fetchone()[0]
    newer = rows_needing_change(scope=run.scope, id_low=run.id_high + 1, id_high=2**63 - 1)
    checks = [
        Check(
            "nothing_left_in_scope",
            left == 0,
            gettext("%(left)s candles in ids %(low)s..%(high)s still need it")
            % {"left": left, "low": run.id_low, "high": run.id_high},
        ),
        Check(
            "backup_equals_changes",
            backed_up == run.rows_updated,
            gettext("%(backed_up)s backed up, %(changed)s changed")
            % {"backed_up": backed_up, "changed": run.rows_updated},
        ),
    ]
    warnings = []
    if changed_since:
        warnings.append(
            gettext("%(count)s corrected candles were changed again after the run") % {"count": changed_since}
        )
    if newer:
        warnings.append(
            gettext("%(count)s candles imported after the run need correction (run a new correction)")
            % {"count": newer}
        )
    report = asset_class_analysis(sample_size=0)
    _record_analysis(report)
    ok = all(c.ok for c in checks)
    result = ValidationResult(
        run_id=run.pk,
        ok=ok,
        checks=checks,
        warnings=warnings,
        quality_score=report.quality_score,
        needing_correction=report.totals.needing_correction,
    )
    _save(run, validation_report=result.to_dict(), **({"phase": Phase.VALIDATED} if ok else {}))
    metrics.operation_duration.labels("validate").observe(time.monotonic() - started)
    metrics.operations_completed.labels("validate", "succeeded" if ok else "failed").inc()
    return result


# ---------------------------------------------------------------- rollback


def _count_groups(into: dict[str, int], rows: list[tuple]) -> None:
    """Add (ticker, market, from, to, n) rows to a JSON-able {key: n} map."""
    for ticker, market, frm, to, n in rows:
        key = json.dumps([ticker, market, frm, to])
        into[key] = into.get(key, 0) + n


def _rollback_batch(run: CorrectionRun, low: int, high: int, state: dict[str, Any]) -> int:
    """Restore backed-up candles low..high in one transaction; returns rows restored."""
    with hash_joins():
        with connection.cursor() as cur:
            cur.execute(CONFLICT_GROUPS_SQL, [run.pk, low, high, low, high])
            conflict_groups = cur.fetchall()
            room = MAX_CONFLICT_SAMPLES - len(state["conflict_samples"])
            if conflict_groups and room > 0:
                cur.execute(CONFLICT_SAMPLES_SQL, [run.pk, low, high, low, high, room])
                state["conflict_samples"] += [
                    dict(zip(("id", "ticker", "market", "old_value", "new_value", "current_value"), r, strict=True))
                    for r in cur.fetchall()
                ]
            cur.execute(MISSING_SQL, [run.pk, low, high, low, high])
            state["missing"] += cur.fetchone()[0]
            conflicts = sum(g[4] for g in conflict_groups)
            state["conflicts"] += conflicts
            # Forced rows first: once restored, the other rows would look like conflicts too.
            if run.rollback_force and conflicts:
                cur.execute(FORCE_RESTORE_SQL, [run.pk, low, high, low, high])
                state["conflicts_restored"] += cur.rowcount
                _count_groups(state["forced_groups"], conflict_groups)
            cur.execute(RESTORE_SQL, [run.pk, low, high, low, high])
            restored_groups = cur.fetchall()
            _count_groups(state["groups"], restored_groups)
            restored = sum(g[4] for g in restored_groups)
        CorrectionRun.objects.filter(pk=run.pk).update(
            rollback_last_id=high,
            rows_restored=F("rows_restored") + restored,
            rollback_conflicts=state["conflicts"],
            rollback_report=state,
        )
    run.rollback_last_id = high
    run.rows_restored += restored
    return restored


def _audit_groups(groups: dict[str, int], *, kind: str, run: CorrectionRun, detail: dict[str, Any]) -> None:
    entries = []
    for key, count in groups.items():
        ticker, market, frm, to = json.loads(key)
        entries.append(
            DataCorrection(
                kind=kind,
                run_ref=run.run_ref,
                table_name="market_data",
                ticker=ticker,
                market=market,
                field="asset_class",
                old_value=frm,
                new_value=to,
                row_count=count,
                detail=detail,
                created_by=run.rolled_back_by,
            )
        )
    DataCorrection.objects.bulk_create(entries, batch_size=1000)


def correction_rollback(
    *, run: CorrectionRun, reason: str, requested_by: str, force: bool = False, batch_size: int | None = None
) -> RollbackResult:
    """Restore every backed-up candle's old value, batch by batch. A candle
    whose asset class changed again after the run is a conflict: reported,
    and restored only with force. A run is rolled back once (`rollback_refusal`)."""
    reason = (reason or "").strip()
    if not reason:
        raise DomainError(gettext("A rollback needs a reason."), code="reason_required")
    started = time.monotonic()
    with _exclusive():
        run.refresh_from_db()
        refusal = rollback_refusal(run=run)
        if refusal is not None:
            raise ConflictError(
                gettext("Correction %(run)s: %(reason)s.") % {"run": run.pk, "reason": refusal.reason},
                code=refusal.code,
            )
        metrics.operations_started.labels("rollback").inc()
        _start_rollback(run, reason=reason, requested_by=requested_by, force=force)
        done_before = run.rows_restored
        outcome = _rollback_batches(run, step=batch_size or run.batch_size)
        elapsed = time.monotonic() - started
        if outcome == RunStatus.CANCELLED:
            _save(run, status=RunStatus.CANCELLED, finished_at=timezone.now())
        else:
            _finish_rollback(run, reason=reason)
        metrics.records_processed.labels("rollback").inc(run.rows_restored - done_before)
        metrics.operation_duration.labels("rollback").observe(elapsed)
        metrics.operations_completed.labels("rollback", str(outcome)).inc()
        state = run.rollback_report
        return RollbackResult(
            run_id=run.pk,
            status=str(run.status),
            phase=str(run.phase),
            rows_restored=run.rows_restored,
            conflicts=state["conflicts"],
            conflicts_restored=state["conflicts_restored"],
            missing=state["missing"],
            conflict_samples=state["conflict_samples"],
            seconds=round(elapsed, 3),
        )


def _start_rollback(run: CorrectionRun, *, reason: str, requested_by: str, force: bool) -> None:
    """Mark the run rolling back; a fresh rollback starts its report, a resumed one keeps it."""
    brin_summarize(table="market_data")  # the batches join candles by id range (BRIN)
    if run.phase != Phase.ROLLING_BACK:
        _save(
            run,
            phase=Phase.ROLLING_BACK,
            rollback_last_id=-1,
            rows_restored=0,
            rollback_conflicts=0,
            rollback_report={
                "groups": {},
                "forced_groups": {},
                "conflicts": 0,
                "conflicts_restored": 0,
                "missing": 0,
                "conflict_samples": [],
            },
        )
    _save(
        run,
        status=RunStatus.RUNNING,
        rollback_reason=reason,
        rollback_force=force,
        rolled_back_by=requested_by,
        cancel_requested=False,
        error="",
        finished_at=None,
    )


def _rollback_batches(run: CorrectionRun, *, step: int) -> str:
    """Restore batch by batch from where the run stands; SUCCEEDED or CANCELLED.
    A failure marks the run failed and is raised."""
    highest = run.backups.aggregate(m=Max("market_data_id"))["m"]
    reporter = ProgressReporter(run, total=run.rows_updated, label=f"rollback {run.pk}")
    reporter.done = run.rows_restored
    try:
        while highest is not None and run.rollback_last_id < highest:
            _check_cancel(run)
            high = _batch_end(
                table_sql=NEXT_BACKUP_SQL, params=[run.pk], after=run.rollback_last_id, size=step, ceiling=highest
            )
            restored = _rollback_batch(run, run.rollback_last_id + 1, high, run.rollback_report)
            reporter.advance(restored, check_cancel=False)
    except Cancelled:
        outcome = RunStatus.CANCELLED
    except BaseException as exc:
        connection_reset()
        reporter.close_quietly()
        _failed(run, exc)
        metrics.operations_completed.labels("rollback", "failed").inc()
        _notify_failed(run, action="rollback", exc=exc)
        raise
    else:
        outcome = RunStatus.SUCCEEDED
    reporter.close()
    return outcome


def _finish_rollback(run: CorrectionRun, *, reason: str) -> None:
    """Write the audit trail of what was restored and mark the run rolled back, in one transaction."""
    state = run.rollback_report
    with transaction.atomic():
        detail = {"run_id": run.pk, "reason": reason}
        _audit_groups(state["groups"], kind="asset_class_rollback", run=run, detail=detail)
        _audit_groups(
            state["forced_groups"], kind="asset_class_rollback_forced", run=run, detail={**detail, "forced": True}
        )
        _save(
            run,
            phase=Phase.ROLLED_BACK,
            status=RunStatus.SUCCEEDED,
            rolled_back_at=timezone.now(),
            finished_at=timezone.now(),
        )


# ---------------------------------------------------------------- metrics


def correction_metrics() -> dict[str, Any]:
    """Operational figures for the metrics endpoint; refreshes the gauges from the
    integrity summaries (the categories as they are now, without a scan)."""

    report = AnalyzeReport(totals=category_totals(), by_market=[], by_asset_class=[], by_expected_class=[], samples={})
    _record_analysis(report)
    return {
        **operational_metrics(),
        "data_quality_score": report.quality_score,
        "records_needing_correction": report.totals.needing_correction,
        "orphan_percent": report.orphan_percent,
        "candles": report.totals.total,
    }


# ---------------------------------------------------------------- pipeline


def _correct_scope_options(options: dict[str, Any]) -> tuple[bool, bool]:
    """(only_null, overwrite_mismatched) of the pipeline step: every candle whose class
    disagrees with its symbol's (null, empty or wrong) unless the request narrows it
    with `only_null` (the old system's `onlyProcessNullAssetClass`)."""
    only_null = bool(
        options.get("only_null", options.get("only_process_null_asset_class", options.get("onlyProcessNullAssetClass")))
    )
    overwrite = options.get("overwrite_mismatched", options.get("overwriteMismatched"))
    return only_null, bool(not only_null if overwrite is None else overwrite)


def _resume_interrupted(progress: ProgressReporter | None) -> dict[str, Any] | None:
    """Resume (and validate) an execute whose process stopped or lost its database
    connection: until it ends, no other correction may start. One an operator
    cancelled is left to them (the new run is then refused, naming it)."""
    stopped = CorrectionRun.objects.filter(phase=Phase.EXECUTING).exclude(status=RunStatus.CANCELLED).first()
    if stopped is None or not is_interrupted(stopped):
        return None
    executed = correction_execute(run=stopped)
    if progress is not None:
        progress.advance(executed.rows_updated)
    resumed: dict[str, Any] = {"run_id": stopped.pk, "rows_updated": executed.rows_updated, "status": executed.status}
    if executed.status == RunStatus.SUCCEEDED:
        resumed["validated"] = correction_validate(run=stopped).ok
    return resumed


def correct_step(*, options: dict[str, Any], progress: ProgressReporter | None = None) -> dict[str, Any]:
    """Pipeline step "correct": analyze, execute with backup and validate; by
    default it fixes every mismatched asset class (see `_correct_scope_options`).
    An execute left interrupted (a killed worker, a PostgreSQL restart) is resumed first."""
    resumed = _resume_interrupted(progress)
    only_null, overwrite_mismatched = _correct_scope_options(options)
    nothing = _nothing_to_correct(scope_for(only_null=only_null, overwrite_mismatched=overwrite_mismatched))
    if nothing is not None:
        return {**nothing, **({"resumed": resumed} if resumed else {})}
    run = correction_run_create(
        requested_by=str(options.get("requested_by") or "pipeline"),
        only_null=only_null,
        overwrite_mismatched=overwrite_mismatched,
        batch_size=int(options.get("batch_size", 50_000)),
        validate_each_batch=bool(options.get("validate_each_batch", False)),
        sample_size=0,
    )
    executed = correction_execute(run=run)
    if progress is not None:
        progress.advance(executed.rows_updated)
    summary: dict[str, Any] = {
        "run_id": run.pk,
        "scope": str(run.scope),
        "rows_updated": executed.rows_updated,
        "status": executed.status,
        **({"resumed": resumed} if resumed else {}),
    }
    if executed.status == RunStatus.SUCCEEDED:
        validation = correction_validate(run=run)
        summary.update(validated=validation.ok, quality_score=validation.quality_score)
        summary["warnings"] = _sla_warnings(seconds=executed.seconds, quality_score=validation.quality_score)
    return summary


def _nothing_to_correct(scope: Scope) -> dict[str, Any] | None:
    """The step's result when the integrity summaries count no candle in `scope` (None when
    they count some): no run, no scan. The summaries are kept by the triggers of every writer
    of market_data, symbols and asset_classes in the writer's own transaction, so a wrong class
    written by anyone is counted here; the daily recount checks them (docs/summaries.md)."""
    totals = category_totals()
    if candidates_in_scope(scope=scope, totals=totals):
        return None
    quality = round(100.0 * totals.correct / totals.total, 2) if totals.total else 100.0
    return {
        "run_id": None,
        "scope": str(scope),
        "rows_updated": 0,
        "status": "skipped",
        "reason": "the integrity summaries count no candle to correct in this scope",
        "candles_to_correct": 0,
        "quality_score": quality,
        "warnings": _sla_warnings(seconds=0.0, quality_score=quality),
    }


def _sla_warnings(*, seconds: float, quality_score: float) -> list[str]:
    """The old system's correction SLA (CORRECTION_SLA_* settings): what this run breached."""
    warnings = []
    if seconds > settings.CORRECTION_SLA_MAX_SECONDS:
        warnings.append(f"correction SLA: took {seconds:.0f}s (limit {settings.CORRECTION_SLA_MAX_SECONDS}s)")
    if quality_score < settings.CORRECTION_SLA_MIN_QUALITY:
        warnings.append(f"correction SLA: quality {quality_score} (needs >= {settings.CORRECTION_SLA_MIN_QUALITY:g})")
    day = CorrectionRun.objects.filter(finished_at__gte=timezone.now() - timedelta(hours=24))
    finished = day.filter(status__in=[RunStatus.SUCCEEDED, RunStatus.FAILED]).count()
    failed = day.filter(status=RunStatus.FAILED).count()
    if finished and failed / finished > settings.CORRECTION_SLA_MAX_ERROR_RATE:
        warnings.append(
            f"correction SLA: {failed} of {finished} runs failed in 24 h"
            f" (limit {settings.CORRECTION_SLA_MAX_ERROR_RATE:.0%})"
        )
    return warnings
