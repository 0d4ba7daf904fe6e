"""import_files keeps only the indexes some query needs: each file's row is written three times."""

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def _indexes() -> set[str]:
    with connection.cursor() as cur:
        cur.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'import_files'")
        return {name for (name,) in cur.fetchall()}


def test_import_files_has_five_indexes_and_none_of_job_or_status_alone():
    names = _indexes()
    assert len(names) == 5, names
    assert {
        "import_files_pkey",
        "import_file_fingerprint",
        "uniq_import_file_job_relpath",
        "import_file_unfinished",
    } <= names
    assert not any(name.startswith(("import_files_job_id_", "import_files_status_")) for name in names)


@pytest.mark.parametrize("status", ["queued", "running", "failed", "dead_lettered", "cancelled"])
def test_the_counts_by_unfinished_status_can_probe_the_partial_index(status):
    with connection.cursor() as cur:
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute("EXPLAIN SELECT count(*) FROM import_files WHERE status = %s", [status])
        plan = "\n".join(line for (line,) in cur.fetchall())
    assert "import_file_unfinished" in plan, plan
