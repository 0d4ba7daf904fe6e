"""Hostile input at the import's doors and in its files: a 400 not a 500, one bad
line costs one line, failures name the file and the reason."""

from __future__ import annotations

import json
from datetime import date, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from batchimport import services
from batchimport.models import ImportFile, ImportJob, ImportStatus, RejectedRow
from etl.errors import DomainError
from etl.models import DeadLetter, MarketData

pytestmark = pytest.mark.django_db

BASE = "/api/batch-processing"
START = ("batchimport.start_import",)
HEADER = b"Date,Open,High,Low,Close,Adj Close,Volume\n"


def rows(count: int) -> list[bytes]:
    first = date(2020, 1, 1)
    return [f"{first + timedelta(days=n)},10,11,9,10.5,10.4,{1000 + n}\n".encode() for n in range(count)]


def run(path: str) -> ImportJob:
    return services.import_job_start(job=services.import_job_create(path=path))


@pytest.mark.parametrize(
    ("data_path", "code"),
    [
        ("a/" * 1000, "path_too_long"),  # under the API guard's string limit, over IMPORT_MAX_PATH_LENGTH
        ("NYSE/" + "b" * 300, "path_invalid"),  # one name past NAME_MAX (255): OSError "File name too long"
    ],
)
def test_an_unusable_data_path_is_a_400(data_root, api_client_for, data_path, code):
    (data_root / "NYSE").mkdir()
    client = api_client_for(staff=True, perms=START)
    response = client.post(f"{BASE}/markets/NYSE/import", {"dataPath": data_path}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert ImportJob.objects.count() == 0


def test_path_resolve_refuses_a_nul_byte_and_a_long_name_with_a_domain_error(data_root):
    for text in ("NYSE/\x00x", "NYSE/" + "c" * 300, "d/" * 600):
        with pytest.raises(DomainError):
            services.path_resolve(path=text)


@pytest.mark.parametrize(
    "fault",
    [
        lambda line: line[:11] + b"\xff" + line[11:],  # not UTF-8
        lambda line: line[:11] + b"\x00" + line[11:],  # a NUL byte
        lambda line: line[:11] + b'"' + b"9" * 200_000 + b'"' + line[11:],  # past csv's field limit
    ],
    ids=["undecodable", "nul", "huge-field"],
)
def test_one_bad_line_costs_one_line_and_is_not_retried(data_root, fault):
    lines = rows(2000)
    lines[1000] = fault(lines[1000])  # physical line 1002
    (data_root / "NYSE").mkdir()
    (data_root / "NYSE" / "KO.csv").write_bytes(HEADER + b"".join(lines))

    job = run("NYSE")

    assert job.status == ImportStatus.SUCCEEDED
    import_file = ImportFile.objects.get(job=job)
    assert (import_file.status, import_file.attempts) == (ImportStatus.SUCCEEDED, 1)
    assert (job.rows_read, job.rows_inserted, job.rows_rejected) == (2000, 1999, 1)
    assert MarketData.objects.filter(ticker="KO").count() == 1999
    assert list(RejectedRow.objects.values_list("line", flat=True)) == [1002]
    assert not DeadLetter.objects.exists()


def test_implausible_dates_and_negative_adjusted_close_are_rejected_on_import(data_root):
    lines = rows(10)
    lines[1] = b"0001-01-02,10,11,9,10.5,10.4,1000\n"
    lines[2] = b"1900-01-02,10,11,9,10.5,10.4,1000\n"
    lines[3] = b"2099-01-02,10,11,9,10.5,10.4,1000\n"
    lines[4] = b"9999-01-02,10,11,9,10.5,10.4,1000\n"
    lines[5] = b"2020-01-06,10,11,9,10.5,-1,1000\n"
    (data_root / "NYSE").mkdir()
    (data_root / "NYSE" / "KO.csv").write_bytes(HEADER + b"".join(lines))
    job = run("NYSE")
    assert job.status == ImportStatus.SUCCEEDED
    assert (job.rows_read, job.rows_inserted, job.rows_rejected) == (10, 5, 5)
    assert RejectedRow.objects.count() == 5
    years = {ts.year for ts in MarketData.objects.filter(ticker="KO").values_list("ts", flat=True)}
    assert years == {2020}


def test_the_command_names_each_failed_file_and_its_reason(data_root):
    (data_root / "NYSE").mkdir()
    (data_root / "NYSE" / "JUNK.csv").write_text("foo,bar\n1,2\n")
    (data_root / "NYSE" / "KO.csv").write_bytes(HEADER + b"".join(rows(3)))
    out = StringIO()
    with pytest.raises(CommandError, match=r"NYSE/JUNK.csv \(.*unknown layout"):
        call_command("import_market_data", "NYSE", "--json", stdout=out)
    summary = json.loads(out.getvalue())
    assert [(f["file"], f["status"]) for f in summary["failed_files"]] == [("NYSE/JUNK.csv", "dead_lettered")]
    assert "unknown layout" in summary["failed_files"][0]["reason"]


def test_the_all_markets_job_names_the_failed_files_and_the_refused_links(data_root, tmp_path):
    outside = tmp_path / "outside.csv"
    outside.write_bytes(HEADER + b"".join(rows(3)))
    (data_root / "DATA" / "NYSE").mkdir(parents=True)
    (data_root / "DATA" / "NYSE" / "JUNK.csv").write_text("foo,bar\n1,2\n")
    (data_root / "DATA" / "NYSE" / "LINK.csv").symlink_to(outside)
    created = services.import_job_create(path="DATA")
    assert "NYSE: LINK.csv: links outside the data root" in created.error
    job = services.import_job_start(job=created)
    assert job.status == ImportStatus.FAILED
    assert "DATA/NYSE/JUNK.csv (" in job.error


def test_a_file_whose_name_gives_a_ticker_too_long_is_dead_lettered_with_the_reason(data_root):
    """It made the job's creation fail with a database error (a 500 from the API)."""
    (data_root / "NYSE").mkdir()
    (data_root / "NYSE" / ("X" * 40 + ".csv")).write_text("Date,Open,High,Low,Close,Volume\n2024-01-02,1,1,1,1,1\n")
    (data_root / "NYSE" / "KO.csv").write_text("Date,Open,High,Low,Close,Volume\n2024-01-02,1,1,1,1,1\n")
    job = services.import_job_start(job=services.import_job_create(path="NYSE"))
    assert job.status == ImportStatus.FAILED and job.rows_inserted == 1
    long = ImportFile.objects.get(relpath__startswith="NYSE/XX")
    assert long.status == ImportStatus.DEAD_LETTERED and "longer than 32 characters" in long.error
