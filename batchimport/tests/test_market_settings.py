"""Per-market import settings: created by bootstrap with the old system's figures,
used by every door for what a request leaves out (a request's value wins for its
job), a queued job spread over max_concurrency tasks, and the expected rate in the
ETA and SLA state before a job has measured its own."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django_q.conf import Conf
from django_q.models import OrmQ

from batchimport import samples, selectors, services
from batchimport.models import ImportFile, ImportJob, ImportStatus, MarketImportSettings
from batchimport.parsing import Layout
from batchimport.services.market_settings import market_import_defaults
from etl import services as etl_services
from etl.pipeline import registered_steps

pytestmark = pytest.mark.django_db

START = ("batchimport.start_import",)
OLD_SYSTEM = {  # the old batch-processing guide's table: batch, concurrency, SLA, records/s; priorities 1-4
    "BIST": (800, 3, 45, 800, 1),
    "CRYPTO": (1500, 4, 20, 1500, 2),
    "NASDAQ": (1500, 4, 25, 1500, 3),
    "NYSE": (1500, 4, 25, 1500, 4),
}
FIELDS = ("batch_size", "max_concurrency", "sla_minutes", "expected_rows_per_second", "priority")


def settings_table() -> dict[str, tuple]:
    return {row[0]: tuple(row[1:]) for row in MarketImportSettings.objects.values_list("market", *FIELDS)}


def job_settings(job: ImportJob) -> tuple:
    return tuple(getattr(job, name) for name in FIELDS)


@pytest.fixture
def nyse(data_root):
    for ticker in ("KO", "PEP", "MO"):
        samples.write_file(data_root / "DATA" / "NYSE" / f"{ticker}.csv", Layout.STANDARD, ticker=ticker, rows=5)
    return data_root


@pytest.fixture
def edited(reference_data):
    """NYSE's settings as an operator edited them in the admin."""
    MarketImportSettings.objects.filter(market="NYSE").update(
        batch_size=700, max_concurrency=2, sla_minutes=33, expected_rows_per_second=900
    )
    return (700, 2, 33, 900, 4)


def test_bootstrap_creates_the_old_systems_settings_once_and_keeps_operators_edits(db):
    first = etl_services.reference_data_bootstrap()
    assert first.created["import_market_settings"] == 4
    assert settings_table() == OLD_SYSTEM
    MarketImportSettings.objects.filter(market="BIST").update(batch_size=1200, max_concurrency=4)
    again = etl_services.reference_data_bootstrap()
    assert (again.created["import_market_settings"], again.updated["import_market_settings"]) == (0, 0)
    assert settings_table()["BIST"] == (1200, 4, 45, 800, 1)  # the operator's edit stays
    reset = etl_services.reference_data_bootstrap(overwrite=True)
    assert reset.updated["import_market_settings"] == 1 and settings_table() == OLD_SYSTEM


def test_before_any_bootstrap_the_old_figures_apply_with_the_batch_size_setting(db, settings):
    settings.BATCH_SIZE_MARKET_DATA = 640
    assert not MarketImportSettings.objects.exists()
    defaults = market_import_defaults("BIST")
    assert (defaults.batch_size, defaults.max_concurrency, defaults.sla_minutes) == (640, 3, 45)
    assert (defaults.expected_rows_per_second, defaults.priority) == (800, 1)


def test_the_api_uses_the_settings_and_a_requests_value_wins(nyse, edited, api_client_for):
    client = api_client_for(staff=True, perms=START)
    response = client.post("/api/batch-processing/markets/NYSE/import", {"dataPath": "DATA/NYSE"}, format="json")
    assert response.status_code == 202, response.content
    job = ImportJob.objects.get(pk=response.json()["job_id"])
    assert job_settings(job) == edited
    assert (response.json()["batch_size"], response.json()["max_concurrency"]) == (700, 2)
    services.import_job_cancel(job=job)
    response = client.post(
        "/api/batch-processing/markets/NYSE/import",
        {"dataPath": "DATA/NYSE", "batchSize": 250, "maxConcurrency": 1, "slaTarget": "00:10:00"},
        format="json",
    )
    job = ImportJob.objects.get(pk=response.json()["job_id"])
    assert job_settings(job) == (250, 1, 10, 900, 4)  # the request's values; the rate and priority are the market's


def test_all_markets_children_take_their_markets_settings_and_the_job_the_global_values(
    data_root, reference_data, api_client_for
):
    samples.write_sample_folder(data_root / "DATA", tickers=1, days=5)
    client = api_client_for(staff=True, perms=START)
    response = client.post("/api/batch-processing/all-markets/import", {"stockScrapperDataPath": "DATA"}, format="json")
    parent = ImportJob.objects.get(pk=response.json()["job_id"])
    children = {child.market: job_settings(child) for child in parent.children.all()}
    assert children == OLD_SYSTEM
    assert parent.max_concurrency == 3 + 4 + 4 + 4  # side by side: as many as the markets on their own
    assert parent.sla_minutes == 120  # the old system's GlobalSlaTarget
    files = ImportFile.objects.filter(job__parent=parent)
    assert {f.market: f.priority for f in files} == {key: row[4] for key, row in OLD_SYSTEM.items()}
    services.import_job_cancel(job=parent)
    sequential = client.post(
        "/api/batch-processing/all-markets/import",
        {"stockScrapperDataPath": "DATA", "runMarketsInParallel": False, "batchSize": 99},
        format="json",
    ).json()
    assert sequential["max_concurrency"] == 4  # one market at a time: the largest
    assert {m["batch_size"] for m in sequential["markets"]} == {99}


def test_the_admin_form_uses_the_settings_when_left_empty(nyse, edited, admin_client):
    page = admin_client.get(reverse("admin:batchimport_importjob_start"))
    assert page.status_code == 200 and b"Market import settings" in page.content
    response = admin_client.post(
        reverse("admin:batchimport_importjob_start"), {"market": "NYSE", "folder": "DATA/NYSE"}
    )
    assert response.status_code == 302
    assert job_settings(ImportJob.objects.get()) == edited


def test_the_command_uses_the_settings_and_its_options_win(nyse, edited):
    out = StringIO()
    call_command("import_market_data", "DATA/NYSE", "--queue", "--json", stdout=out)
    queued = json.loads(out.getvalue())
    assert queued["max_concurrency"] == 2
    assert job_settings(ImportJob.objects.get(pk=queued["job_id"])) == edited
    services.import_job_cancel(job=ImportJob.objects.get(pk=queued["job_id"]))
    out = StringIO()
    call_command("import_market_data", "DATA/NYSE", "--batch-size", "300", "--json", stdout=out)
    done = ImportJob.objects.get(pk=json.loads(out.getvalue())["job_id"])
    assert (done.status, done.batch_size, done.max_concurrency, done.sla_minutes) == ("succeeded", 300, 2, 33)


def test_the_pipeline_step_uses_the_settings(nyse, edited):
    step = next(step for step in registered_steps() if step.name == "import")
    result = step.run(options={"path": "DATA/NYSE"}, progress=None)
    assert job_settings(ImportJob.objects.get(pk=result["job_id"])) == edited


def test_the_admin_edits_the_settings(reference_data, admin_client):
    url = reverse("admin:batchimport_marketimportsettings_changelist")
    page = admin_client.get(url)
    assert page.status_code == 200 and b"NYSE" in page.content
    nyse = MarketImportSettings.objects.get(market="NYSE")
    change = reverse("admin:batchimport_marketimportsettings_change", args=[nyse.pk])
    data = {"market": "NYSE", "batch_size": 2000, "max_concurrency": 6, "sla_minutes": 30}
    response = admin_client.post(change, {**data, "expected_rows_per_second": 1800, "priority": 4})
    assert response.status_code == 302
    assert settings_table()["NYSE"] == (2000, 6, 30, 1800, 4)
    refused = admin_client.post(change, {**data, "max_concurrency": 99, "expected_rows_per_second": 1, "priority": 4})
    assert refused.status_code == 200 and settings_table()["NYSE"][1] == 6  # 1..32, said on the form


# ---------------------------------------------------------------- max_concurrency on queued jobs


def test_a_queued_job_is_spread_over_max_concurrency_tasks(
    data_root, reference_data, django_capture_on_commit_callbacks
):
    for number in range(6):
        samples.write_file(data_root / "DATA" / "NYSE" / f"T{number}.csv", Layout.STANDARD, ticker=f"T{number}", rows=3)
    with django_capture_on_commit_callbacks(execute=True):
        job = services.import_job_submit(path="DATA/NYSE", max_concurrency=2, queue=True)
    tasks_queued = list(OrmQ.objects.all())
    assert len(tasks_queued) == 2  # six files, two worker tasks
    assert {t.task["func"] for t in tasks_queued} == {"batchimport.tasks.import_job_work"}
    assert {t.task["args"] for t in tasks_queued} == {(job.pk,)}  # each claims files until none is left
    OrmQ.objects.all().delete()
    services.import_job_cancel(job=job)
    with django_capture_on_commit_callbacks(execute=True):
        services.import_job_submit(path="DATA/NYSE/T0.csv", queue=True)  # the market's 4, but one file
    assert OrmQ.objects.count() == 1


def test_with_the_sync_queue_the_tasks_share_the_files_and_the_job_finishes(
    data_root, reference_data, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(Conf, "SYNC", True)
    for number in range(5):
        samples.write_file(data_root / "DATA" / "NYSE" / f"T{number}.csv", Layout.STANDARD, ticker=f"T{number}", rows=4)
    with django_capture_on_commit_callbacks(execute=True):
        job = services.import_job_submit(path="DATA/NYSE", max_concurrency=3, queue=True)
    job.refresh_from_db()
    assert job.status == ImportStatus.SUCCEEDED and job.files_done == 5 and job.rows_inserted == 20
    assert set(job.files.values_list("attempts", flat=True)) == {1}


# ---------------------------------------------------------------- the expected rate in the ETA and SLA


def test_before_a_job_has_its_own_rate_its_eta_comes_from_the_expected_rate(nyse, edited):
    earlier = services.import_job_start(job=services.import_job_create(path="DATA/NYSE/KO.csv"))
    assert earlier.status == ImportStatus.SUCCEEDED
    done = earlier.files.get()
    bytes_per_row = done.size / done.rows_read
    assert selectors.market_bytes_per_row("NYSE") == pytest.approx(bytes_per_row)

    job = services.import_job_create(path="DATA/NYSE")  # queued: nothing measured yet
    timing = selectors.job_timing(job=job)
    expected = job.progress_total / bytes_per_row / 900  # the market's expected rows/s (edited: 900)
    assert timing.eta_basis == "expected_rate" and timing.eta_seconds == pytest.approx(expected, abs=0.1)
    status = selectors.job_status(job=job)
    assert (status["etaBasis"], status["expectedRowsPerSecond"]) == ("expected_rate", 900)

    # At a rate so slow the job cannot make its SLA, it is at risk before it starts.
    ImportJob.objects.filter(pk=job.pk).update(expected_rows_per_second=1, progress_total=10**12)
    job.refresh_from_db()
    assert selectors.job_timing(job=job).sla_state == "at risk"

    finished = services.import_job_start(job=job)
    assert selectors.job_timing(job=finished).eta_seconds is None  # ended: no ETA


def test_a_job_without_history_has_no_eta_until_it_measures_its_rate(nyse, edited):
    job = services.import_job_create(path="DATA/NYSE")
    timing = selectors.job_timing(job=job)
    assert (timing.eta_seconds, timing.eta_basis, timing.sla_state) == (None, None, "not started")


def test_the_admin_list_shows_the_expected_rate_and_the_eta(nyse, edited, admin_client):
    services.import_job_start(job=services.import_job_create(path="DATA/NYSE/KO.csv"))
    services.import_job_create(path="DATA/NYSE/PEP.csv")
    page = admin_client.get(reverse("admin:batchimport_importjob_changelist")).content.decode()
    assert "(expected 900)" in page and "at the expected rate" in page
