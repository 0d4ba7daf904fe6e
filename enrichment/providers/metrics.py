"""Prometheus metrics of the provider layer, defined once (low-cardinality labels:
provider code and outcome word, never a symbol)."""

from prometheus_client import Counter, Histogram

provider_requests = Counter(
    "enrichment_provider_requests_total", "Provider HTTP attempts by outcome", ["provider", "outcome"]
)
provider_request_seconds = Histogram(
    "enrichment_provider_request_seconds",
    "Provider HTTP attempt duration",
    ["provider"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
circuit_opened = Counter("enrichment_circuit_opened_total", "Times a provider circuit opened", ["provider"])
