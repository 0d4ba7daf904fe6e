"""Import scraper CSV files (a market folder, the whole DATA folder, or one file)."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from batchimport import services
from batchimport.markets import MARKET_KEYS
from batchimport.models import ImportJob
from batchimport.services.jobs import job_failures
from etl.commands import JsonCommand


class _Bar:
    """Files, rows, rate and ETA on the terminal, redrawn from the job row at
    most twice a second (workers call it after each batch)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.job_id: int | None = None
        self._lock = threading.Lock()
        self._last = 0.0
        self.progress: Progress | None = None

    def start(self, job: ImportJob) -> None:
        """Called with the created job before its first file is read."""
        self.job_id = job.pk
        if not self.enabled:
            return
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("{task.fields[detail]}"),
            TimeRemainingColumn(),
        )
        self.task = self.progress.add_task(f"import #{job.pk}", total=job.progress_total or 1, detail="")
        self.progress.start()

    def __call__(self, _n: int = 0) -> None:
        if self.progress is None or time.monotonic() - self._last < 0.5:
            return
        with self._lock:
            self._last = time.monotonic()
            self._draw(ImportJob.objects.get(pk=self.job_id))

    def _draw(self, job: ImportJob) -> None:
        rate = job.rows_per_second or 0
        detail = f"files {job.files_done}/{job.files_total}  rows {job.rows_read:,}  {rate:,.0f} rows/s"
        self.progress.update(self.task, completed=job.progress_done, detail=detail)

    def close(self) -> None:
        if self.progress is not None and self.job_id is not None:
            self._draw(ImportJob.objects.get(pk=self.job_id))
            self.progress.stop()


class Command(JsonCommand):
    help = "Import scraper CSV files into market_data (PATH is relative to DATA_ROOT or absolute inside it)."

    def add_command_arguments(self, parser) -> None:
        parser.add_argument("path")
        parser.add_argument("--market", choices=MARKET_KEYS, type=str.upper)
        parser.add_argument("--batch-size", type=int, default=None, help="default: the market's import settings")
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="files read side by side: threads here (default 1); with --queue, worker tasks "
            "(default: the market's import settings)",
        )
        parser.add_argument("--queue", action="store_true", help="hand the job to django-q2 workers and return")
        parser.add_argument("--overwrite", action="store_true", help="overwrite stored candles that differ")
        parser.add_argument("--sequential", action="store_true", help="all markets one after another (priority)")

    def run(self, **options: Any) -> dict[str, Any]:
        """services.import_job_submit: queued, or run here with a progress bar."""
        bar = _Bar(enabled=not options["json"] and sys.stderr.isatty())
        try:
            job = services.import_job_submit(
                queue=options["queue"],
                workers=options["workers"] or 1,
                on_start=bar.start,
                on_batch=bar,
                path=options["path"],
                market=options["market"],
                batch_size=options["batch_size"],
                overwrite=options["overwrite"],
                run_in_parallel=not options["sequential"],
                max_concurrency=options["workers"],
                requested_by="command",
            )
        finally:
            bar.close()
        if options["queue"]:
            return {
                "job_id": job.pk,
                "status": "queued",
                "files": job.files_total,
                "max_concurrency": job.max_concurrency,
            }
        summary = {
            "job_id": job.pk,
            "status": job.status,
            "files": job.files_total,
            "files_done": job.files_done,
            "files_skipped": job.files_skipped,
            "files_failed": job.files_failed,
            **{name: getattr(job, name) for name in ImportJob.COUNT_FIELDS},
            "seconds": round(job.duration_seconds or 0, 2),
            "rows_per_second": job.rows_per_second,
            "error": job.error,
            "failed_files": [
                {"file": failure.relpath, "status": failure.status, "reason": failure.error}
                for failure in job_failures(job=job)
            ],
        }
        summary["ok"] = job.status == "succeeded"
        return summary
