"""The orchestrator: runs the registered pipeline steps in order and records
every run and step as the execution history.

Steps come from `etl.pipeline`'s registry (each app registers its own from
`AppConfig.ready()`), so this module never imports another app. One
pipeline runs at a time across every process and host: the run holds a
PostgreSQL session advisory lock, which the server releases by itself if
the process dies, so a crash never leaves the pipeline locked.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext, pgettext_lazy
from django_q.models import Schedule

from etl import events, locks, summaries
from etl.alerts import run_failure_notify
from etl.errors import ConflictError, DomainError
from etl.logcontext import run_context
from etl.metrics import pipeline_runs, pipeline_step_seconds
from etl.models import PipelineRun, PipelineStepRun, PipelineTrigger, RunStatus, status_word
from etl.pipeline import PipelineStep, registered_steps
from etl.progress import Cancelled, ProgressReporter, RunPresence
from etl.queue import queue_on_commit
from etl.recovery import connection_lost, connection_reset, dead_runs_cancel, write_after_reconnect

logger = logging.getLogger("etl.pipeline")

# Every step the design names, in its order; a named step that no installed
# app has registered yet is recorded as skipped rather than refused.
CANONICAL_STEPS = ("bootstrap", "import", "sync", "correct", "enrich", "features", "validate")
# Options without which a step has nothing to do: it is skipped, not failed.
REQUIRED_OPTIONS: dict[str, tuple[str, ...]] = {"import": ("path",)}

StepCallback = Callable[[PipelineStepRun], None]
# A run whose steps all succeeded but reported warnings (breached warning gates):
# its status stays `succeeded`, its summary's `outcome` says this.
SUCCEEDED_WITH_WARNINGS = "succeeded with warnings"
# How it reads to an operator (the stored outcome stays the machine word).
SUCCEEDED_WITH_WARNINGS_LABEL = pgettext_lazy("status word", "succeeded with warnings")
# Off by DATA_ENRICHMENT_ENABLED: the old system's switch for its enrichment service.
ENRICHMENT_STEPS = ("enrich", "features")


@dataclass(frozen=True, slots=True)
class StepOutcome:
    name: str
    status: str
    duration_seconds: float | None
    counts: dict[str, Any]
    error: str


@dataclass(frozen=True, slots=True)
class PipelineResult:
    run_id: int
    status: str
    duration_seconds: float | None
    error: str
    steps: list[StepOutcome] = field(default_factory=list)
    outcome: str = ""  # the status, or "succeeded with warnings"
    gates: list[dict[str, Any]] = field(default_factory=list)  # the validate step's gate results

    @property
    def ok(self) -> bool:
        return self.status == RunStatus.SUCCEEDED

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _result(run: PipelineRun) -> PipelineResult:
    steps = [
        StepOutcome(s.name, s.status, s.duration_seconds, s.counts, s.error)
        for s in run.step_runs.order_by("order", "id")
    ]
    return PipelineResult(run.pk, run.status, run.duration_seconds, run.error, steps, run_outcome(run), run_gates(run))


def run_outcome(run: PipelineRun) -> str:
    """How the run ended: its status, or "succeeded with warnings" when a warning
    gate (or another step warning) was breached; a run not closed yet: its status."""
    return str((run.summary or {}).get("outcome") or run.status)


def outcome_label(outcome: str) -> str:
    """An outcome (see `run_outcome`) in the operator's language."""
    return str(SUCCEEDED_WITH_WARNINGS_LABEL) if outcome == SUCCEEDED_WITH_WARNINGS else status_word(outcome)


def run_gates(run: PipelineRun) -> list[dict[str, Any]]:
    """The quality gates its validate step checked (name, value, threshold, op,
    severity, passed, breached), as recorded in the run's summary."""
    return list((run.summary or {}).get("gates") or [])


def run_gates_breached(run: PipelineRun) -> list[dict[str, Any]]:
    return [g for g in run_gates(run) if g.get("breached")]


@dataclass(frozen=True, slots=True)
class PlannedStep:
    name: str
    order: int
    step: PipelineStep | None  # None: no installed app registers a step of this name


def pipeline_plan(steps: Sequence[str] | None = None) -> list[PlannedStep]:
    """The steps in run order. No names: every registered default step.
    Unknown names are refused."""
    registry = {s.name: s for s in registered_steps()}
    if not steps:
        return [PlannedStep(s.name, s.order, s) for s in registry.values() if s.default]
    names = list(dict.fromkeys(n.strip().lower() for n in steps if n.strip()))
    unknown = [n for n in names if n not in registry and n not in CANONICAL_STEPS]
    if unknown:
        known = sorted(set(registry) | set(CANONICAL_STEPS))
        raise DomainError(
            gettext("unknown pipeline step(s) %(unknown)s; known steps: %(known)s")
            % {"unknown": unknown, "known": known},
            code="unknown_step",
        )
    plan = []
    for n in names:
        step = registry.get(n)
        order = step.order if step else (CANONICAL_STEPS.index(n) + 1) * 10
        plan.append(PlannedStep(n, order, step))
    return sorted(plan, key=lambda p: (p.order, p.name))


def _pipeline_lock() -> AbstractContextManager[bool]:
    """Try the pipeline's session lock on this connection; yield whether we hold it."""
    return locks.session_lock(locks.PIPELINE)


def pipeline_in_progress() -> PipelineRun | None:
    return PipelineRun.objects.filter(status=RunStatus.RUNNING).order_by("-started_at").first()


def _pipeline_waiting() -> PipelineRun | None:
    """A run queued for the workers and not yet started. One an operator cancelled
    waits to end, not to run; one queued longer ago than Q_RETRY lost its task."""
    lost = timezone.now() - timedelta(seconds=settings.Q_CLUSTER.get("retry", 3900))
    waiting = PipelineRun.objects.filter(status=RunStatus.QUEUED, cancel_requested=False, created_at__gte=lost)
    return waiting.order_by("created_at").first()


def _busy_message() -> str:
    """What a skipped run records (in the log's language, like every stored run error)."""
    current = pipeline_in_progress()
    return f"pipeline run #{current.pk} is in progress" if current else "another pipeline run is in progress"


def _busy_refusal() -> ConflictError:
    """The refusal a caller reads while another run holds the pipeline (in the caller's language)."""
    current = pipeline_in_progress()
    if current is None:
        message = gettext("another pipeline run is in progress; try again when it has finished")
    else:
        message = gettext("pipeline run #%(run)s is in progress; try again when it has finished") % {"run": current.pk}
    return ConflictError(message, code="pipeline_running")


def _validate(max_seconds: float | None) -> None:
    if max_seconds is not None and max_seconds <= 0:
        raise DomainError(gettext("maximum execution time must be positive"), code="invalid_max_time")


def pipeline_run(
    *,
    steps: Sequence[str] | None = None,
    options: dict[str, Any] | None = None,
    continue_on_failure: bool = False,
    max_seconds: int | None = None,
    trigger: str = PipelineTrigger.COMMAND,
    requested_by: str = "",
    console: bool = False,
    on_step: StepCallback | None = None,
) -> PipelineResult:
    """Run the pipeline now, in this process, and record it. Raises
    `ConflictError` when another run holds the lock; a scheduled run is
    recorded as skipped instead, and logged."""
    _validate(max_seconds)
    plan = pipeline_plan(steps)
    fields = {
        "trigger": trigger,
        "requested_by": requested_by,
        "steps_requested": [p.name for p in plan] if steps else [],
        "options": _jsonable(options or {}),
        "continue_on_failure": continue_on_failure,
        "max_seconds": max_seconds,
    }
    with _pipeline_lock() as acquired:
        if not acquired:
            if trigger != PipelineTrigger.SCHEDULE:
                raise _busy_refusal()
            return _skip(PipelineRun.objects.create(**fields), _busy_message())
        run = PipelineRun.objects.create(**fields)
        with run_context("pipeline", run.pk):  # every log line of every step names this run
            return _execute(run, plan, console=console, on_step=on_step)


def pipeline_queue(
    *,
    steps: Sequence[str] | None = None,
    options: dict[str, Any] | None = None,
    continue_on_failure: bool = False,
    max_seconds: int | None = None,
    trigger: str = PipelineTrigger.API,
    requested_by: str = "",
) -> PipelineRun:
    """Record a queued run and hand it to the workers once committed.
    Refused with `ConflictError` naming the run when one is queued or in progress
    now: of many requests at once exactly one is queued."""
    _validate(max_seconds)
    plan = pipeline_plan(steps)
    with transaction.atomic():
        # Held until commit: of many requests at once, each sees the run the one before queued.
        locks.xact_lock(locks.PIPELINE_QUEUE)
        waiting = _pipeline_waiting()
        if waiting is not None:
            raise ConflictError(
                gettext("pipeline run #%(run)s is queued; try again when it has run") % {"run": waiting.pk},
                code="pipeline_running",
            )
        with _pipeline_lock() as acquired:
            if not acquired:
                raise _busy_refusal()
        run = PipelineRun.objects.create(
            trigger=trigger,
            requested_by=requested_by,
            steps_requested=[p.name for p in plan] if steps else [],
            options=_jsonable(options or {}),
            continue_on_failure=continue_on_failure,
            max_seconds=max_seconds,
        )
        queue_on_commit("etl.tasks.pipeline_execute", run.pk, group="etl-pipeline")
    return run


def pipeline_rerun(*, run: PipelineRun, requested_by: str, trigger: str = PipelineTrigger.ADMIN) -> PipelineRun:
    """Queue a new run with the steps and options of `run` (see `pipeline_queue`)."""
    return pipeline_queue(
        steps=run.steps_requested or None,
        options=run.options,
        continue_on_failure=run.continue_on_failure,
        max_seconds=run.max_seconds,
        trigger=trigger,
        requested_by=requested_by,
    )


def pipeline_execute(*, run_id: int, console: bool = False, on_step: StepCallback | None = None) -> PipelineResult:
    """Run a queued run (the worker's side of `pipeline_queue`). If another
    run holds the lock, this one is recorded as skipped."""
    run = PipelineRun.objects.get(pk=run_id)
    if run.status != RunStatus.QUEUED:
        # Delivered twice (django-q2 retries a task that outlives `retry`): already handled.
        return _result(run)
    with _pipeline_lock() as acquired:
        if not acquired:
            return _skip(run, _busy_message())
        plan = pipeline_plan(run.steps_requested or None)
        with run_context("pipeline", run.pk):  # every log line of every step names this run
            return _execute(run, plan, console=console, on_step=on_step)


def _skip(run: PipelineRun, message: str) -> PipelineResult:
    logger.warning("pipeline run #%s (%s) skipped: %s", run.pk, run.trigger, message)
    pipeline_runs.labels(status=RunStatus.SKIPPED, trigger=run.trigger).inc()
    now = timezone.now()
    PipelineRun.objects.filter(pk=run.pk).update(
        status=RunStatus.SKIPPED, error=f"skipped: {message}", started_at=now, finished_at=now
    )
    run.refresh_from_db()
    return _result(run)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


@dataclass(slots=True)
class _RunState:
    """What the steps so far decide for the ones after them (mutable, internal)."""

    started: float
    failed: list[str] = field(default_factory=list)
    breaches: list[str] = field(default_factory=list)  # error gates a step reported breached
    gate_failed: list[str] = field(default_factory=list)  # the steps those gates failed
    warnings: list[str] = field(default_factory=list)
    gates: list[dict[str, Any]] = field(default_factory=list)
    timed_out: bool = False
    cancelled: bool = False
    # The step during which the run's database session was lost (a PostgreSQL restart),
    # when the pipeline lock could not be taken again on the new one: nothing more runs.
    lock_lost_in: str = ""


@dataclass(frozen=True, slots=True)
class _NotRun:
    status: str
    error: str


def _execute(
    run: PipelineRun,
    plan: list[PlannedStep],
    *,
    console: bool,
    on_step: StepCallback | None,
    clock: Callable[[], float] = time.monotonic,
) -> PipelineResult:
    """Run the plan's steps in order under the pipeline lock, recording each; then close the run.
    The run is present (its run lock held, its beat stamped) from start to end, between steps too."""
    state = _RunState(started=clock())
    step_runs = _start(run, plan)
    with RunPresence(run) as presence:
        for planned, step_run in zip(plan, step_runs, strict=True):
            remaining = None if run.max_seconds is None else run.max_seconds - (clock() - state.started)
            not_run = _not_run(run, planned.name, planned.step, state, remaining)
            if not_run is not None:
                _finish_step(step_run, not_run.status, error=not_run.error, on_step=on_step)
            else:
                _run_step(run, planned.step, step_run, state, remaining=remaining, console=console, on_step=on_step)
                presence.keep()  # on the new session, if the step's was lost
        return _close(run, step_runs, state, elapsed=clock() - state.started)


def _start(run: PipelineRun, plan: list[PlannedStep]) -> list[PipelineStepRun]:
    """Mark the run running and record its steps as pending."""
    # We hold the lock, so a run still marked running was cut off (its process died).
    PipelineRun.objects.filter(status=RunStatus.RUNNING).update(
        status=RunStatus.FAILED, error="interrupted: its process ended before it finished", finished_at=timezone.now()
    )
    run.status, run.started_at = RunStatus.RUNNING, timezone.now()
    run.save(update_fields=["status", "started_at"])
    logger.info("pipeline run #%s started: %s", run.pk, [p.name for p in plan])
    return PipelineStepRun.objects.bulk_create([PipelineStepRun(run=run, name=p.name, order=p.order) for p in plan])


def _not_run(
    run: PipelineRun, name: str, step: PipelineStep | None, state: _RunState, remaining: float | None
) -> _NotRun | None:
    """Why this step is not run (skipped or cancelled), or None to run it."""
    missing = [o for o in REQUIRED_OPTIONS.get(name, ()) if not run.options.get(o)]
    if state.cancelled:
        return _NotRun(RunStatus.CANCELLED, "the run was cancelled")
    if state.lock_lost_in:
        return _NotRun(
            RunStatus.SKIPPED,
            f"not run: the database connection was lost during step {state.lock_lost_in}, and the pipeline"
            " lock with it",
        )
    if step is None:
        return _NotRun(RunStatus.SKIPPED, "not available: no installed app registers this step")
    if missing:
        return _NotRun(RunStatus.SKIPPED, f"needs option(s) {missing}")
    if name in ENRICHMENT_STEPS and not settings.DATA_ENRICHMENT_ENABLED:
        return _NotRun(RunStatus.SKIPPED, "not run: DATA_ENRICHMENT_ENABLED is off")
    if state.failed and not run.continue_on_failure:
        return _NotRun(RunStatus.SKIPPED, f"not run: step {state.failed[0]} failed")
    if remaining is not None and remaining <= 0:
        state.timed_out = True
        return _NotRun(RunStatus.SKIPPED, "not run: maximum execution time reached")
    if PipelineRun.objects.filter(pk=run.pk, cancel_requested=True).exists():
        state.cancelled = True
        return _NotRun(RunStatus.CANCELLED, "the run was cancelled")
    return None


def _finish_step(
    step_run: PipelineStepRun,
    status: str,
    *,
    error: str = "",
    counts: dict | None = None,
    on_step: StepCallback | None,
) -> None:
    step_run.status, step_run.error, step_run.finished_at = status, error, timezone.now()
    step_run.started_at = step_run.started_at or step_run.finished_at
    if counts is not None:
        step_run.counts = counts
    step_run.save(update_fields=["status", "error", "finished_at", "started_at", "counts"])
    if on_step:
        on_step(step_run)


def _run_step(
    run: PipelineRun,
    step: PipelineStep,
    step_run: PipelineStepRun,
    state: _RunState,
    *,
    remaining: float | None,
    console: bool,
    on_step: StepCallback | None,
) -> None:
    """Run one step with the run's options and record how it ended; a failure is recorded, never raised."""
    step_run.status, step_run.started_at = RunStatus.RUNNING, timezone.now()
    step_run.save(update_fields=["status", "started_at"])
    if on_step:
        on_step(step_run)
    options = {**run.options, "requested_by": run.requested_by or f"pipeline:{run.pk}"}
    if remaining is not None:
        options["max_seconds"] = remaining
    progress = ProgressReporter(run, label=step_run.name, bar=console)
    session = connection.connection  # the session that holds the pipeline lock
    failure: Exception | None = None
    try:
        counts = step.run(options=options, progress=progress)
    except Exception as exc:  # a failing step is recorded, never fatal to the history
        failure = exc
        if not isinstance(exc, Cancelled):
            logger.exception("pipeline run #%s: step %s failed", run.pk, step_run.name)
    connection_reset()  # a session cut during the step (a PostgreSQL restart): what follows uses a new one
    progress.close_quietly()
    if connection.connection is not session:
        _lock_again(run, step_run.name, state)
    try:
        if isinstance(failure, Cancelled):
            state.cancelled = True
            _finish_step(step_run, RunStatus.CANCELLED, error=str(failure), on_step=on_step)
        elif failure is not None:
            state.failed.append(step_run.name)
            error = f"{type(failure).__name__}: {connection_lost(failure) or failure}"[:4000]
            record = partial(_finish_step, step_run, RunStatus.FAILED, error=error, on_step=on_step)
            write_after_reconnect(record, what=f"step {step_run.name} of pipeline run #{run.pk}")
        else:
            _step_done(step_run, counts, state, on_step=on_step)
    finally:
        pipeline_step_seconds.labels(step=step_run.name).observe(step_run.duration_seconds or 0.0)
        _deltas_fold(step_run.name)


def _deltas_fold(step_name: str) -> None:
    """Fold the metric and integrity-summary deltas the step left, so that the status pages
    and the next scrape add up a few rows instead of folding them: an import of 100,000 files
    leaves 1.5 M metric deltas (the first scrape after it took 8.6 s), the feature step of
    100,000 series some 300,000 summary deltas. The step that wrote them pays, once. A fold
    already running elsewhere does the summaries' part; a failure only logs."""
    try:
        events.metrics_fold()
        summaries.summaries_fold(vacuum=True)
    except Exception:
        logger.exception("folding the deltas after step %s failed", step_name)


def _lock_again(run: PipelineRun, step_name: str, state: _RunState) -> None:
    """The run's session was replaced during a step (PostgreSQL restarted): the pipeline
    lock died with the old one. Take it again on the new session to go on, as the only
    pipeline running; when another run holds it now, run nothing more."""
    taken = write_after_reconnect(partial(locks.try_session_lock, locks.PIPELINE), what="the pipeline lock")
    if taken:
        logger.warning("pipeline run #%s: a new database session during step %s; lock taken again", run.pk, step_name)
        return
    logger.warning("pipeline run #%s: database session lost during step %s; stopping", run.pk, step_name)
    state.lock_lost_in = step_name


def _step_done(step_run: PipelineStepRun, counts: Any, state: _RunState, *, on_step: StepCallback | None) -> None:
    """Record a step that returned. Its counts may say `skipped` (a reason), `breached`
    (error gates: the step fails) and `warnings` (the run ends succeeded with warnings)."""
    counts = _jsonable(counts if isinstance(counts, dict) else {"result": counts})
    skipped = counts.pop("skipped", None)
    breached = [str(b) for b in counts.get("breached") or []]
    state.warnings += [f"{step_run.name}: {w}" for w in counts.get("warnings") or []]
    state.gates += counts.get("gates") or []
    if breached:
        state.failed.append(step_run.name)
        state.gate_failed.append(step_run.name)
        state.breaches += breached
        _finish_step(step_run, RunStatus.FAILED, error="; ".join(breached), counts=counts, on_step=on_step)
        return
    status = RunStatus.SKIPPED if skipped else RunStatus.SUCCEEDED
    _finish_step(step_run, status, error=str(skipped) if skipped else "", counts=counts, on_step=on_step)


def _close(run: PipelineRun, step_runs: list[PipelineStepRun], state: _RunState, *, elapsed: float) -> PipelineResult:
    """Record the run's outcome and summary, count it, and alert when it failed."""
    # A step failed by its gates is named by the gates it breached; another by its first error line.
    step_errors = {sr.name: sr.error.split(": ", 1)[-1].splitlines()[0] for sr in step_runs if sr.error}
    errors = [
        f"step {n} failed: {step_errors[n]}" if n in step_errors else f"step {n} failed"
        for n in state.failed
        if n not in state.gate_failed
    ] + state.breaches
    if state.lock_lost_in:
        errors.append(f"the database connection was lost during step {state.lock_lost_in}; run it again")
    if state.timed_out:
        errors.append(f"maximum execution time ({run.max_seconds}s) reached")
    if state.cancelled:
        status = RunStatus.CANCELLED
    elif errors:
        status = RunStatus.FAILED
    else:
        status = RunStatus.SUCCEEDED
    step_status = {sr.name: sr.status for sr in step_runs}
    run.status, run.error, run.finished_at = status, "; ".join(errors), timezone.now()
    run.summary = {
        "steps": step_status,
        "failed": state.failed,
        "skipped": [n for n, s in step_status.items() if s == RunStatus.SKIPPED],
        "timed_out": state.timed_out,
        "continue_on_failure": run.continue_on_failure,
        "outcome": SUCCEEDED_WITH_WARNINGS if status == RunStatus.SUCCEEDED and state.warnings else str(status),
        "warnings": state.warnings,
        "gates": state.gates,
    }
    save = partial(run.save, update_fields=["status", "error", "finished_at", "summary"])
    write_after_reconnect(save, what=f"the end of pipeline run #{run.pk}")
    pipeline_runs.labels(status=status, trigger=run.trigger).inc()
    logger.info("pipeline run #%s %s in %.1fs", run.pk, status, elapsed)
    if status == RunStatus.FAILED:
        run_failure_notify(kind="pipeline", run_id=run.pk, summary=f"Pipeline run #{run.pk} failed: {run.error}")
    return _result(run)


def pipeline_cancel(*, run: PipelineRun) -> bool:
    """Ask a queued or running run to stop between batches/steps; one whose process
    is gone (killed, or its connection lost) is cancelled at once."""
    runs = PipelineRun.objects.filter(pk=run.pk)
    asked = runs.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).update(cancel_requested=True)
    dead_runs_cancel(runs=runs)
    return bool(asked)


# ---------------------------------------------------------------------------
# Recurring runs (a django-q2 schedule)


@dataclass(frozen=True, slots=True)
class ScheduleResult:
    schedule_id: int
    name: str
    cron: str
    timezone: str
    next_run: datetime
    created: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pipeline_schedule(
    *,
    cron: str,
    tz: str = "UTC",
    name: str = "",
    steps: Sequence[str] | None = None,
    options: dict[str, Any] | None = None,
    continue_on_failure: bool = True,
    max_seconds: int | None = None,
) -> ScheduleResult:
    """Create (or, same name, replace) a django-q2 schedule that runs the
    pipeline at the cron expression's times in zone `tz`.

    django-q2 evaluates cron in the server's zone (UTC); every save of the
    row, the scheduler's after each run included, re-aims its next run in `tz`
    (`etl.services.schedules`), so a 02:00 Europe/Istanbul run stays at 02:00
    local from the first run on, across DST changes."""
    if not croniter.is_valid(cron):
        raise DomainError(
            gettext("cron: %(cron)s is not a valid cron expression") % {"cron": repr(cron)}, code="invalid_cron"
        )
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise DomainError(
            gettext("timezone: %(zone)s is not an IANA time zone") % {"zone": repr(tz)}, code="invalid_timezone"
        ) from None
    _validate(max_seconds)
    plan = pipeline_plan(steps)
    name = name or f"pipeline {cron} {tz}"
    kwargs = {
        "schedule_name": name,
        "cron": cron,
        "tz": tz,
        "steps": [p.name for p in plan] if steps else None,
        "options": _jsonable(options or {}),
        "continue_on_failure": continue_on_failure,
        "max_seconds": max_seconds,
    }
    schedule, created = Schedule.objects.update_or_create(
        name=name,
        defaults={
            "func": "etl.tasks.pipeline_scheduled",
            "schedule_type": Schedule.CRON,
            "cron": cron,
            "kwargs": repr(kwargs),
            "repeats": -1,
        },
    )
    # What was stored, not what we meant to store: the answer is the row.
    next_run = Schedule.objects.values_list("next_run", flat=True).get(pk=schedule.pk)
    return ScheduleResult(schedule.pk, name, cron, tz, next_run, created)


def pipeline_scheduled_run(
    *,
    schedule_name: str,
    cron: str,
    tz: str,
    steps: Sequence[str] | None = None,
    options: dict[str, Any] | None = None,
    continue_on_failure: bool = True,
    max_seconds: int | None = None,
) -> PipelineResult:
    """What a `pipeline_schedule` schedule fires (the scheduler has already aimed
    its next run in `tz`); a run already in progress makes this one a logged,
    recorded skip."""
    return pipeline_run(
        steps=steps,
        options=options,
        continue_on_failure=continue_on_failure,
        max_seconds=max_seconds,
        trigger=PipelineTrigger.SCHEDULE,
        requested_by=f"schedule:{schedule_name}",
    )
