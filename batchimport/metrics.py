"""Prometheus metrics of the import, defined once (low-cardinality labels)."""

from prometheus_client import Counter

import_rows = Counter("batchimport_rows_total", "Rows read by imports, by outcome", ["outcome"])
import_files = Counter("batchimport_files_total", "Import files finished, by status", ["status"])
