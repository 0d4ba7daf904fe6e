"""Reads of asset enrichment: how much of the symbol catalogue is enriched (overall, per
market and per field), and the latest runs."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

from django.utils import timezone

from enrichment.assets.metadata_score import EXPECTED_FIELDS
from enrichment.assets.models import DEAD_LETTER_KIND, AssetEnrichmentRun
from etl.models import DeadLetter, Symbol
from etl.summaries import SummaryValues, summary_read

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
# Enriched: a live provider answered (enriched_at). Partially enriched: none has yet, but the
# symbol has its name (from the offline catalogue, the local catalogue file or an operator).
# The summaries count both per market (etl migration 0014, integrity_symbol_metrics).


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def enrichment_coverage() -> dict[str, Any]:
    """Coverage as the old guide counts it, (enriched + partially enriched) / active symbols,
    overall and per market, with each field's fill rate and the expected fields still missing
    somewhere. Read from the integrity summaries (symbols.* per market), not the symbols."""
    values = summary_read("symbols.")
    codes = sorted(code for code, active in values.by_market("symbols.active").items() if active)
    markets = [_market_coverage(values, code) for code in codes]
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


def _market_coverage(values: SummaryValues, market: str) -> dict[str, Any]:
    targets = values.value("symbols.active", market)
    enriched, partial = values.value("symbols.enriched", market), values.value("symbols.partial", market)
    expected = EXPECTED_FIELDS[MARKET_KINDS.get(market, "stock")]
    filled = {name: values.value(f"symbols.field.{name}", market) for name in COVERAGE_FIELDS}
    fields = {
        name: {"filled": filled[name], "percent": _pct(filled[name], targets), "expected": name in expected}
        for name in COVERAGE_FIELDS
    }
    return {
        "market": market,
        "targets": targets,
        "enriched": enriched,
        "partial": partial,
        "coverage_percent": _pct(enriched + partial, targets),
        "fields": fields,
        "missing": [name for name in COVERAGE_FIELDS if name in expected and fields[name]["filled"] < targets],
    }


def _stale(values: SummaryValues, cutoff) -> int:
    """Active symbols last enriched before `cutoff`: whole days from the summaries'
    per-day counts, the day `cutoff` falls in from the symbols' enriched_at index."""
    day = cutoff.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    before = sum(n for (_market, bucket), n in values.buckets("symbols.enriched_day").items() if bucket < day)
    return before + Symbol.objects.filter(is_active=True, enriched_at__gte=day, enriched_at__lt=cutoff).count()


def enrichment_status(*, stale_days: int = 30) -> dict[str, Any]:
    """How much of the symbol catalogue is enriched, its quality, the latest runs and open dead letters."""
    cutoff = timezone.now() - timedelta(days=stale_days)
    values = summary_read("symbols.", buckets=True)
    scored = values.total("symbols.scored")
    agg = {
        "total": values.total("symbols.active"),
        "enriched": values.total("symbols.enriched"),
        "stale": _stale(values, cutoff),
        "average_quality": values.total("symbols.score_sum") / scored if scored else None,
    }
    agg["never"] = agg["total"] - agg["enriched"]
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
