"""Models of batchimport."""
