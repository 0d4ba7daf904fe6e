"""Batch import's dashboard panel: SLA compliance per market over the last 7 days."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Count, Q
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from batchimport.markets import MARKETS
from batchimport.models import ImportJob, ImportStatus


def sla_context(request: HttpRequest) -> dict[str, Any]:
    since = timezone.now() - timedelta(days=7)
    finished = ImportJob.objects.filter(kind=ImportJob.Kind.MARKET, finished_at__gte=since)
    rows = {
        r["market"]: r
        for r in finished.values("market").annotate(
            total=Count("id"),
            breached=Count("id", filter=Q(sla_breached=True)),
            failed=Count("id", filter=Q(status=ImportStatus.FAILED)),
        )
    }
    url = reverse("admin:batchimport_importjob_changelist")
    markets = []
    for spec in MARKETS:
        market, sla = spec.key, spec.sla_minutes
        row = rows.get(market, {"total": 0, "breached": 0, "failed": 0})
        compliance = None if not row["total"] else 100.0 * (row["total"] - row["breached"]) / row["total"]
        markets.append(
            {
                "market": market,
                "sla_minutes": sla,
                **row,
                "compliance": compliance,
                "url": f"{url}?market__exact={market}",
                "breached_url": f"{url}?market__exact={market}&sla_breached__exact=1",
            }
        )
    return {"markets": markets, "jobs_url": url}
