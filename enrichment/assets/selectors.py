"""Reads of asset enrichment: how much of the symbol catalogue is enriched (overall, per
market and per field), and the latest runs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Avg, Count, Q
from django.utils import timezone

from enrichment.assets.metadata_score import EXPECTED_FIELDS
from enrichment.assets.models import DEAD_LETTER_KIND, AssetEnrichmentRun
from etl.models import DeadLetter, Symbol

# The fields the coverage counts, Symbol names in the order the docs list them.
COVERAGE_FIELDS = (
    "name",
    "sector",
    "industry",
    "country",
    "quote_currency",
    "market_cap",
    "description",
    "website",
    "category",
)
# What a market's symbols are, for the fields they should carry (metadata_score.EXPECTED_FIELDS).
MARKET_KINDS = {"BINANCE": "crypto", "FOREX_MARKET": "fx"}
# The old guide's success line: enriched + partially enriched above 80 % of the target symbols.
COVERAGE_GOAL = 80.0
# Partially enriched: no live provider has answered yet, but the symbol has its name
# (from the offline catalogue, the local catalogue file or an operator).
_PARTIAL = Q(enriched_at__isnull=True) & ~Q(name="")


def _filled(field: str) -> Q:
    return Q(**{f"{field}__isnull": False}) if field == "market_cap" else ~Q(**{field: ""})


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def enrichment_coverage() -> dict[str, Any]:
    """Coverage as the old guide counts it, (enriched + partially enriched) / active symbols,
    overall and per market, with each field's fill rate and the expected fields still missing
    somewhere. One grouped count over the symbols."""
    aggregates = {
        "targets": Count("id"),
        "enriched": Count("id", filter=Q(enriched_at__isnull=False)),
        "partial": Count("id", filter=_PARTIAL),
        **{f"f_{name}": Count("id", filter=_filled(name)) for name in COVERAGE_FIELDS},
    }
    rows = Symbol.objects.filter(is_active=True).values("market__code").annotate(**aggregates).order_by("market__code")
    markets = [_market_coverage(row) for row in rows]
    targets = sum(m["targets"] for m in markets)
    covered = sum(m["enriched"] + m["partial"] for m in markets)
    return {
        "targets": targets,
        "enriched": sum(m["enriched"] for m in markets),
        "partial": sum(m["partial"] for m in markets),
        "coverage_percent": _pct(covered, targets),
        "goal_percent": COVERAGE_GOAL,
        "fields": {name: _pct(sum(m["fields"][name]["filled"] for m in markets), targets) for name in COVERAGE_FIELDS},
        "markets": markets,
    }


def _market_coverage(row: dict[str, Any]) -> dict[str, Any]:
    market, targets = row["market__code"], row["targets"]
    expected = EXPECTED_FIELDS[MARKET_KINDS.get(market, "stock")]
    fields = {
        name: {"filled": row[f"f_{name}"], "percent": _pct(row[f"f_{name}"], targets), "expected": name in expected}
        for name in COVERAGE_FIELDS
    }
    return {
        "market": market,
        "targets": targets,
        "enriched": row["enriched"],
        "partial": row["partial"],
        "coverage_percent": _pct(row["enriched"] + row["partial"], targets),
        "fields": fields,
        "missing": [name for name in COVERAGE_FIELDS if name in expected and fields[name]["filled"] < targets],
    }


def enrichment_status(*, stale_days: int = 30) -> dict[str, Any]:
    """How much of the symbol catalogue is enriched, its quality, the latest runs and open dead letters."""
    cutoff = timezone.now() - timedelta(days=stale_days)
    agg = Symbol.objects.filter(is_active=True).aggregate(
        total=Count("id"),
        enriched=Count("id", filter=Q(enriched_at__isnull=False)),
        never=Count("id", filter=Q(enriched_at__isnull=True)),
        stale=Count("id", filter=Q(enriched_at__lt=cutoff)),
        scored=Count("id", filter=Q(data_quality_score__isnull=False)),
        average_quality=Avg("data_quality_score"),
    )
    runs = [
        {
            "id": r.pk,
            "status": r.status,
            "requested_by": r.requested_by,
            "created_at": r.created_at,
            "finished_at": r.finished_at,
            "total": r.symbols_total,
            "enriched": r.enriched,
            "partial": r.partial,
            "failed": r.failed,
            "dead_lettered": r.dead_lettered,
            "percent": r.percent,
            "error": r.error,
        }
        for r in AssetEnrichmentRun.objects.order_by("-created_at")[:10]
    ]
    total = agg["total"] or 0
    return {
        "symbols": total,
        "enriched": agg["enriched"],
        "never_enriched": agg["never"],
        "stale": agg["stale"],
        "stale_days": stale_days,
        "coverage_percent": round(100 * agg["enriched"] / total, 2) if total else None,
        "average_quality": round(agg["average_quality"], 1) if agg["average_quality"] is not None else None,
        "open_dead_letters": DeadLetter.objects.filter(kind=DEAD_LETTER_KIND, resolved_at__isnull=True).count(),
        "coverage": enrichment_coverage(),
        "runs": runs,
    }
