"""Enrichment's numbers in the integrity summaries (etl.summaries): what the enrichment
and provider pages, the completeness gate and /api/v1/enrichment/metrics read instead of
counting `enrichment_status`, `data_quality_metrics`, `backfill_state` and the logs.
The triggers are enrichment migration 0008; the recount SQL below sums the same
functions over the whole tables."""

from __future__ import annotations

from etl.summaries import SummarySource, register_summary_source

# The logs are counted per hour; a day and a half more than the 24 hours the pages show.
LOG_WINDOW_HOURS = 48

_BY_SYMBOL_MARKET = "JOIN symbols s ON s.id = t.symbol_id JOIN markets m ON m.id = s.market_id"
_PER_MARKET = """
SELECT m.code AS market, f.metric, f.bucket, sum(f.value) AS value
FROM {table} t {join} CROSS JOIN LATERAL {function}(t) f
GROUP BY 1, 2, 3
"""
_PER_HOUR = """
SELECT {market} AS market, f.metric, f.bucket,
       CASE WHEN f.metric LIKE '%%.max' THEN max(f.value) ELSE sum(f.value) END AS value
FROM {table} t CROSS JOIN LATERAL {function}(t) f
WHERE t.created_at >= %(since)s
GROUP BY 1, 2, 3
"""

SOURCES = (
    SummarySource(
        "series",
        "series.",
        _PER_MARKET.format(table="enrichment_status", join=_BY_SYMBOL_MARKET, function="integrity_series_metrics"),
        "enrichment_status: series per market and state, their rows, mean quality and completeness",
    ),
    SummarySource(
        "quality",
        "quality.",
        _PER_MARKET.format(table="data_quality_metrics", join=_BY_SYMBOL_MARKET, function="integrity_quality_metrics"),
        "data_quality_metrics: measured days, expected and complete bars per market and day",
    ),
    SummarySource(
        "backfill",
        "backfill.",
        _PER_MARKET.format(table="backfill_state", join=_BY_SYMBOL_MARKET, function="integrity_backfill_metrics"),
        "backfill_state: backfills per market and state",
    ),
    SummarySource(
        "fetch",
        "fetch.",
        _PER_HOUR.format(market="t.provider", table="enrichment_fetch_log", function="integrity_fetch_metrics"),
        "enrichment_fetch_log: calls and successes per provider and hour",
        window_hours=LOG_WINDOW_HOURS,
    ),
    SummarySource(
        "compute",
        "compute.",
        _PER_HOUR.format(market="''", table="enrichment_compute_log", function="integrity_compute_metrics"),
        "enrichment_compute_log: computations, failures, rows and durations per hour",
        window_hours=LOG_WINDOW_HOURS,
    ),
)


def register_summary_sources() -> None:
    """Called once from EnrichmentConfig.ready()."""
    for source in SOURCES:
        register_summary_source(source)
