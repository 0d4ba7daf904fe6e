"""Scrape-time freshness metrics of the live series, read from `live_series` (small summary
rows, one query per market): the lag histogram and the stale and critical series per market."""

from __future__ import annotations

import logging

from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily

from enrichment.candles.freshness import LAG_BUCKETS, freshness_summary

log = logging.getLogger(__name__)


class FreshnessCollector:
    def describe(self):
        return []

    def collect(self):
        try:
            markets = freshness_summary()
        except Exception:  # a scrape must answer even when the database does not
            log.exception("freshness metrics could not be read")
            return
        lag = GaugeHistogramMetricFamily(
            "mytrader_live_lag_seconds",
            "Live series by lag from a bar's close to its stored features (or the wait of a missing bar)",
            labels=["market"],
        )
        stale = GaugeMetricFamily(
            "mytrader_live_stale_series", "Live series past their freshness target", labels=["market"]
        )
        critical = GaugeMetricFamily(
            "mytrader_live_critical_series", "Live series past their critical lag", labels=["market"]
        )
        target = GaugeMetricFamily("mytrader_live_target_seconds", "Freshness target", labels=["market"])
        for market in markets:
            total = market.fresh + market.stale
            buckets = [(str(float(b)), n) for b, n in zip(LAG_BUCKETS, market.buckets, strict=True)]
            lag.add_metric([market.market], buckets + [("+Inf", total)], gsum_value=market.lag_sum)
            stale.add_metric([market.market], market.stale)
            critical.add_metric([market.market], market.critical)
            target.add_metric([market.market], market.target_seconds)
        yield from (lag, stale, critical, target)
