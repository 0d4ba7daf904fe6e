"""Import metrics: events counted by row triggers (etl.events), the running
jobs' rate read at scrape time from the few running rows."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db.models import OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from batchimport.models import ImportFile, ImportJob, ImportStatus
from etl.event_triggers import EventTrigger
from etl.events import DbCounter

log = logging.getLogger(__name__)

jobs_started = DbCounter(
    "mytrader_import_jobs_started_total", "Market import jobs that started (again, after a retry)", ["market"]
)
sla_breaches = DbCounter(
    "mytrader_import_sla_breaches_total",
    "Market import jobs that ran past their SLA (again, after a retry)",
    ["market"],
)

_MARKET_JOB = "NEW.kind = 'market'"
EVENT_TRIGGERS = (
    EventTrigger(
        table="import_jobs",
        family="mytrader_import_jobs_started",
        when=f"{_MARKET_JOB} AND NEW.status = 'running' AND (TG_OP = 'INSERT' OR OLD.status <> 'running')",
        labels=(("market", "NEW.market"),),
    ),
    EventTrigger(
        table="import_jobs",
        family="mytrader_import_sla_breaches",
        when=f"{_MARKET_JOB} AND NEW.sla_breached AND (TG_OP = 'INSERT' OR NOT OLD.sla_breached)",
        labels=(("market", "NEW.market"),),
    ),
)


class ImportCollector:
    event_triggers = EVENT_TRIGGERS

    def describe(self):
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            yield self._rows_per_second()
        except Exception:  # a scrape must answer even when the database does not
            log.exception("import metrics could not be read")

    def _rows_per_second(self) -> Metric:
        rate = GaugeMetricFamily(
            "mytrader_import_rows_per_second",
            "Rows read per second since it started by the running market import job (the slowest, if several)",
            labels=["market"],
        )
        in_flight = (
            ImportFile.objects.filter(job=OuterRef("pk"), status=ImportStatus.RUNNING)
            .values("job")
            .annotate(n=Sum("progress_done"))
            .values("n")
        )
        # Served by the (kind, status) index: running jobs are few, and so are their running files.
        running = (
            ImportJob.objects.filter(kind=ImportJob.Kind.MARKET, status=ImportStatus.RUNNING, started_at__isnull=False)
            .annotate(reading=Coalesce(Subquery(in_flight), 0))
            .values_list("market", "started_at", "rows_read", "reading")
        )
        now = timezone.now()
        slowest: dict[str, float] = {}
        for market, started_at, rows_read, reading in running:
            seconds = (now - started_at).total_seconds()
            if seconds > 0:
                value = (rows_read + reading) / seconds
                slowest[market] = min(value, slowest.get(market, value))
        for market, value in sorted(slowest.items()):
            rate.add_metric([market], round(value, 3))
        return rate
