"""Reads: job status, monitoring statistics, health."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import Avg, Count, Q, Sum
from django.utils import timezone

from batchimport.models import TERMINAL, ImportFile, ImportJob, ImportStatus, RejectedRow
from etl.models import DeadLetter

# How many of a market's latest imported files tell its bytes per row (for an ETA from the expected rate).
BYTES_PER_ROW_SAMPLE = 200


def market_bytes_per_row(market: str) -> float | None:
    """Bytes per row of the market's latest successfully imported files, or None before any.
    One small query: the newest files of the market, by primary key."""
    latest = ImportFile.objects.filter(market=market, status=ImportStatus.SUCCEEDED, rows_read__gt=0, size__gt=0)
    totals = list(latest.order_by("-id").values_list("size", "rows_read")[:BYTES_PER_ROW_SAMPLE])
    rows = sum(r for _, r in totals)
    return sum(size for size, _ in totals) / rows if rows else None


@dataclass(frozen=True, slots=True)
class JobTiming:
    """What an operator reads about a job's time: its ETA, where the ETA comes from
    (`observed`: its own byte rate so far; `expected_rate`: the market's expected
    rows/s, before the job has measured its own), and its SLA state with that projection."""

    eta_seconds: float | None
    eta_basis: str | None
    sla_state: str


def _expected_eta(job: ImportJob, per_row: dict[str, float | None]) -> float | None:
    """Seconds left at the market's expected rate: remaining bytes / bytes per row / rows per second."""
    if job.kind == ImportJob.Kind.ALL_MARKETS:
        parts = [_expected_eta(child, per_row) for child in job.children.all()]
        known = [p for p in parts if p is not None]
        if not known:
            return None
        return max(known) if job.run_in_parallel else sum(known)
    if not job.expected_rows_per_second or job.progress_total is None:
        return None
    if job.market not in per_row:
        per_row[job.market] = market_bytes_per_row(job.market)
    bytes_per_row = per_row[job.market]
    if not bytes_per_row:
        return None
    remaining = max(0, job.progress_total - (job.progress_done or 0))
    return remaining / bytes_per_row / job.expected_rows_per_second


def job_timing(*, job: ImportJob, per_row: dict[str, float | None] | None = None) -> JobTiming:
    """The job's ETA and SLA state. `per_row` caches bytes per row by market across calls (a list page)."""
    state = job.sla_state
    if job.status in TERMINAL:
        return JobTiming(eta_seconds=None, eta_basis=None, sla_state=state)
    eta, basis = job.eta_seconds, "observed"
    if eta is None:
        eta, basis = _expected_eta(job, {} if per_row is None else per_row), "expected_rate"
    if eta is None:
        return JobTiming(eta_seconds=None, eta_basis=None, sla_state=state)
    if state in ("on track", "not started"):
        deadline = job.sla_deadline or timezone.now() + timedelta(minutes=job.sla_minutes)
        if timezone.now() + timedelta(seconds=eta) > deadline:
            state = "at risk"  # it will not make its SLA at this rate
    return JobTiming(eta_seconds=round(eta, 1), eta_basis=basis, sla_state=state)


def job_status(*, job: ImportJob) -> dict[str, Any]:
    timing = job_timing(job=job)
    data = {
        "jobId": job.pk,
        "kind": job.kind,
        "market": job.market or None,
        "status": job.status,
        "path": job.path,
        "attempt": job.attempt,
        "percent": round(job.percent, 1) if job.percent is not None else None,
        "rowsPerSecond": job.rows_per_second,
        "expectedRowsPerSecond": job.expected_rows_per_second,
        "etaSeconds": timing.eta_seconds,
        "etaBasis": timing.eta_basis,
        "startedAt": job.started_at,
        "finishedAt": job.finished_at,
        "slaMinutes": job.sla_minutes,
        "slaBreached": job.sla_breached,
        "slaState": timing.sla_state,
        "batchSize": job.batch_size,
        "maxConcurrency": job.max_concurrency,
        "overwrite": job.overwrite,
        "requestedBy": job.requested_by,
        "scheduleName": job.schedule_name,
        "createdAt": job.created_at,
        "cancelRequested": job.cancel_requested,
        "error": job.error,
        "files": {
            "total": job.files_total,
            "done": job.files_done,
            "skipped": job.files_skipped,
            "failed": job.files_failed,
            "byStatus": dict(
                ImportFile.objects.filter(Q(job=job) | Q(job__parent=job))
                .values_list("status")
                .annotate(n=Count("id"))
                .values_list("status", "n")
            ),
        },
        "rows": {
            "read": job.rows_read,
            "inserted": job.rows_inserted,
            "duplicates": job.rows_duplicates,
            "updated": job.rows_updated,
            "rejected": job.rows_rejected,
            "changedKept": job.rows_changed,
        },
    }
    if job.kind == ImportJob.Kind.ALL_MARKETS:
        data["markets"] = [job_status(job=child) for child in job.children.order_by("id")]
    return data


def _day_bounds(start: date | None, end: date | None) -> Q:
    q = Q()
    if start:
        q &= Q(created_at__gte=timezone.make_aware(datetime.combine(start, time.min)))
    if end:
        q &= Q(created_at__lte=timezone.make_aware(datetime.combine(end, time.max)))
    return q


def monitoring_stats(*, start: date | None = None, end: date | None = None) -> dict[str, Any]:
    """Jobs between two dates: counts by status, rows, rate, SLA compliance, error rate."""
    jobs = ImportJob.objects.filter(_day_bounds(start, end), parent__isnull=True)
    by_status = dict(jobs.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    totals = jobs.aggregate(
        read=Sum("rows_read"),
        inserted=Sum("rows_inserted"),
        rejected=Sum("rows_rejected"),
        duplicates=Sum("rows_duplicates"),
        updated=Sum("rows_updated"),
        rate=Avg("rate_per_second"),
    )
    ended = jobs.filter(status__in=TERMINAL)
    market_jobs = ImportJob.objects.filter(_day_bounds(start, end), kind=ImportJob.Kind.MARKET, status__in=TERMINAL)
    sla_total = market_jobs.count()
    sla_met = market_jobs.filter(sla_breached=False).count()
    read = totals["read"] or 0
    return {
        "startDate": start,
        "endDate": end,
        "jobs": jobs.count(),
        "jobsByStatus": by_status,
        "jobSuccessRate": round(100 * by_status.get("succeeded", 0) / ended.count(), 1) if ended.exists() else None,
        "rows": {k: totals[k] or 0 for k in ("read", "inserted", "duplicates", "updated", "rejected")},
        "errorRatePercent": round(100 * (totals["rejected"] or 0) / read, 2) if read else None,
        "averageRowsPerSecond": round(totals["rate"], 1) if totals["rate"] else None,
        "slaCompliancePercent": round(100 * sla_met / sla_total, 1) if sla_total else None,
        "slaBreaches": sla_total - sla_met,
        "byMarket": list(
            market_jobs.values("market").annotate(
                jobs=Count("id"), rows=Sum("rows_read"), breaches=Count("id", filter=Q(sla_breached=True))
            )
        ),
    }


def health() -> dict[str, Any]:
    running = ImportJob.objects.filter(status=ImportStatus.RUNNING, parent__isnull=True)
    return {
        "status": "degraded" if running.filter(sla_breached=True).exists() else "healthy",
        "runningJobs": running.count(),
        "queuedFiles": ImportFile.objects.filter(status=ImportStatus.QUEUED).count(),
        "runningFiles": ImportFile.objects.filter(status=ImportStatus.RUNNING).count(),
        "slaBreachesRunning": running.filter(sla_breached=True).count(),
        "openDeadLetters": DeadLetter.objects.filter(
            kind="import_file", resolved_at__isnull=True, resubmitted_at__isnull=True
        ).count(),
        "checkedAt": timezone.now(),
    }


def rejected_rows(*, job: ImportJob | None = None, file_id: int | None = None, reason: str = ""):
    qs = RejectedRow.objects.select_related("file").order_by("file_id", "line")
    if job is not None:
        qs = qs.filter(Q(job=job) | Q(job__parent=job))
    if file_id:
        qs = qs.filter(file_id=file_id)
    if reason:
        qs = qs.filter(reason__icontains=reason)
    return qs
