"""Models of enrichment."""
