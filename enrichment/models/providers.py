"""Provider-side models: fetch log, circuit breaker state, rate-limit buckets, enrichment runs."""
