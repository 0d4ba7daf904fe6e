"""Prometheus metrics of the import, defined once (low-cardinality labels),
counted in the database (etl.events) so every web process exports what the
workers counted."""

from etl.events import DbCounter

import_rows = DbCounter("batchimport_rows_total", "Rows read by imports, by outcome", ["outcome"])
import_files = DbCounter("batchimport_files_total", "Import files finished, by status", ["status"])
