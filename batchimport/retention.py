"""Import history past its retention age: finished jobs (with their files and
rejected rows) whose files wrote no candles, and rejected rows of kept jobs."""

from __future__ import annotations

from django.db.models import Max, Q

from batchimport.models import TERMINAL, ImportJob, RejectedRow

# A file that wrote candles is their provenance (market_data.import_file_id, the file's path
# kept once): its row, and so its job, stays. Such a row is small next to its candles; a
# constraint or a lookup from candles back to files would cost a scan of every candle.
DELIVERED = (
    Q(files__rows_inserted__gt=0)
    | Q(files__rows_updated__gt=0)
    | Q(children__files__rows_inserted__gt=0)
    | Q(children__files__rows_updated__gt=0)
)


def prune_import_jobs(cutoff) -> int:
    """Delete finished top-level jobs created before `cutoff` with their child jobs,
    files and rejected rows, keeping the latest job of each kind and every job whose files
    wrote candles (their provenance; docs/storage.md)."""
    latest = (
        ImportJob.objects.filter(parent=None).values("kind").annotate(last=Max("id")).values_list("last", flat=True)
    )
    old = ImportJob.objects.filter(parent=None, created_at__lt=cutoff, status__in=TERMINAL)
    delivered = ImportJob.objects.filter(DELIVERED).values("pk")
    return old.exclude(pk__in=list(latest)).exclude(pk__in=delivered).delete()[0]


def prune_rejected_rows(cutoff) -> int:
    """Rejected rows older than `cutoff`, also of the jobs that are kept."""
    return RejectedRow.objects.filter(created_at__lt=cutoff).delete()[0]
