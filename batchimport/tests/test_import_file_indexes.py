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


def _scans(plan: dict) -> list[dict]:
    """Every node of an EXPLAIN (FORMAT JSON) plan that reads import_files."""
    nodes = [plan] if plan.get("Relation Name") == "import_files" else []
    for child in plan.get("Plans", []):
        nodes += _scans(child)
    return nodes


@pytest.mark.parametrize("which", ["queued", "orphan"])
def test_a_claim_reads_a_groups_worth_of_the_jobs_files_not_all_of_them(data_root, which):
    """The claim's cost does not grow with the job: it read (and sorted) every queued file of the
    job for each group of 500, 12 ms a group at 100,000 files, quadratic over the job."""
    from batchimport.models import ImportFile, ImportJob
    from batchimport.services import jobs

    (data_root / "NYSE").mkdir()
    for i in range(300):
        (data_root / "NYSE" / f"T{i:03d}.csv").write_text("Date,Open,High,Low,Close,Volume\n")
    jobs.import_job_create(path="NYSE")
    family = [j.pk for j in ImportJob.objects.filter(files__isnull=False).distinct()]
    assert ImportFile.objects.filter(job_id__in=family).count() == 300
    if which == "orphan":
        ImportFile.objects.filter(job_id__in=family).update(status="running")
    query = jobs.CLAIM_QUEUED_SQL if which == "queued" else jobs.CLAIM_ORPHAN_SQL
    with connection.cursor() as cur:
        cur.execute("ANALYZE import_files")
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query, [family, 10, 10])
        plan = cur.fetchone()[0][0]["Plan"]
        cur.execute(query, [family, 10, 10])
        claimed = [file_id for file_id, _ in cur.fetchall()]
    assert claimed == list(
        ImportFile.objects.filter(job_id__in=family).order_by("priority", "id")[:10].values_list("id", flat=True)
    )
    scans = _scans(plan)
    assert scans and all(node["Actual Rows"] <= 10 for node in scans), [
        (n["Node Type"], n["Actual Rows"]) for n in scans
    ]
