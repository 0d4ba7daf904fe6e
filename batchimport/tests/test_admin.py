"""The admin pages and actions, through admin_client."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django_q.conf import Conf
from django_q.models import Schedule

from batchimport import samples, services
from batchimport.models import ImportDeadLetter, ImportJob, ImportStatus, RejectedRow
from batchimport.parsing import Layout
from etl.models import MarketData

pytestmark = pytest.mark.django_db


@pytest.fixture
def sync_q(monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def imported(sample_folder):
    job = services.import_job_create(path="DATA")
    return services.import_job_start(job=job)


def test_job_pages_render(admin_client, imported):
    changelist = admin_client.get(reverse("admin:batchimport_importjob_changelist"))
    assert (
        changelist.status_code == 200
        and b"<progress" in changelist.content
        and b"Start an import" in changelist.content
    )
    change = admin_client.get(reverse("admin:batchimport_importjob_change", args=[imported.pk]))
    assert change.status_code == 200
    for name in ("importfile", "rejectedrow", "importdeadletter"):
        assert admin_client.get(reverse(f"admin:batchimport_{name}_changelist")).status_code == 200


def test_start_import_from_a_folder(admin_client, sample_folder, sync_q, django_capture_on_commit_callbacks):
    url = reverse("admin:batchimport_importjob_start")
    assert admin_client.get(url).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, {"market": "NYSE", "folder": "DATA/NYSE", "batch_size": 100, "workers": 1})
    assert response.status_code == 302
    job = ImportJob.objects.get()
    assert job.status == ImportStatus.SUCCEEDED and job.market == "NYSE" and job.rows_inserted > 0


def test_start_import_from_an_upload(admin_client, data_root, sync_q, django_capture_on_commit_callbacks, tmp_path):
    path = tmp_path / "KO.csv"
    samples.write_file(path, Layout.STANDARD, ticker="KO", rows=7)
    upload = SimpleUploadedFile("../../KO.csv", path.read_bytes(), content_type="text/csv")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:batchimport_importjob_start"),
            {"market": "NYSE", "upload": upload, "batch_size": 100, "workers": 1},
        )
    assert response.status_code == 302
    assert (data_root / "uploads" / "NYSE" / "KO.csv").exists()
    assert MarketData.objects.filter(ticker="KO").count() == 7


def test_start_import_outside_root_shows_the_error(admin_client, data_root):
    response = admin_client.post(
        reverse("admin:batchimport_importjob_start"),
        {"market": "NYSE", "folder": "../..", "batch_size": 10, "workers": 1},
    )
    assert response.status_code == 200 and b"outside the data root" in response.content
    assert not ImportJob.objects.exists()


def test_cancel_and_retry_actions(admin_client, sample_folder, sync_q, django_capture_on_commit_callbacks):
    job = services.import_job_create(path="DATA")
    url = reverse("admin:batchimport_importjob_changelist")
    response = admin_client.post(url, {"action": "cancel_jobs", "_selected_action": [job.pk]}, follow=True)
    assert b"cancelled" in response.content
    job.refresh_from_db()
    assert job.status == ImportStatus.CANCELLED
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(url, {"action": "retry_jobs", "_selected_action": [job.pk]}, follow=True)
    job.refresh_from_db()
    assert job.status == ImportStatus.SUCCEEDED and job.rows_read == sample_folder.rows


def test_rejected_rows_filter_and_csv_download(admin_client, imported):
    url = reverse("admin:batchimport_rejectedrow_changelist")
    dup = admin_client.get(url, {"reason_kind": "duplicate"})
    assert dup.status_code == 200
    expected = RejectedRow.objects.filter(reason__startswith="duplicate").count()
    assert expected > 0 and dup.context["cl"].result_count == expected
    download = admin_client.get(reverse("admin:batchimport_rejectedrow_download"), {"reason_kind": "duplicate"})
    rows = list(csv.reader(io.StringIO(b"".join(download.streaming_content).decode())))
    assert rows[0] == ["file", "line", "reason", "field", "raw", "job"] and len(rows) == expected + 1
    picked = list(RejectedRow.objects.values_list("pk", flat=True)[:3])
    action = admin_client.post(url, {"action": "download_csv", "_selected_action": picked})
    assert len(b"".join(action.streaming_content).decode().strip().splitlines()) == 4


def test_dead_letter_resubmit_action(admin_client, data_root, sync_q, django_capture_on_commit_callbacks):
    (data_root / "NYSE").mkdir()
    (data_root / "NYSE" / "X.csv").write_text("nothing,useful\n")
    services.import_job_start(job=services.import_job_create(path="NYSE"))
    letter = ImportDeadLetter.objects.get()
    samples.write_file(data_root / "NYSE" / "X.csv", Layout.STANDARD, ticker="X", rows=4)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:batchimport_importdeadletter_changelist"),
            {"action": "resubmit", "_selected_action": [letter.pk]},
            follow=True,
        )
    assert b"queued again" in response.content
    assert MarketData.objects.filter(ticker="X").count() == 4


def test_the_admin_schedules_an_import_keeping_what_the_form_says(sample_folder, admin_client, reference_data):
    url = reverse("admin:batchimport_importjob_schedule")
    assert admin_client.get(url).status_code == 200
    assert url in admin_client.get(reverse("admin:batchimport_importjob_changelist")).content.decode()
    form = {"name": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Istanbul", "folder": "DATA"}
    response = admin_client.post(url, {**form, "workers": 3, "sla_minutes": 90, "sequential": "on"})
    assert response.status_code == 302
    schedule = Schedule.objects.get(name="batchimport:nightly")
    stored = services.import_schedule_request(schedule)
    assert stored == {
        "path": "DATA",
        "tz": "Europe/Istanbul",
        "options": {"max_concurrency": 3, "sla_minutes": 90, "run_in_parallel": False},
    }
    again = admin_client.post(url, {**form, "cron": "0 3 * * *"})
    assert again.status_code == 200 and "already exists" in again.content.decode()


def test_run_now_of_an_import_schedule_starts_its_import(
    sample_folder, admin_client, reference_data, sync_q, django_capture_on_commit_callbacks
):
    schedule = services.import_schedule_create(
        name="nightly", path="DATA/NYSE", cron="0 2 * * *", options={"batch_size": 111}
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:django_q_schedule_changelist"), {"action": "run_now", "_selected_action": [schedule.pk]}
        )
    assert response.status_code == 302
    job = ImportJob.objects.get()
    assert (job.schedule_name, job.batch_size, job.status) == ("batchimport:nightly", 111, ImportStatus.SUCCEEDED)


def test_scheduling_and_running_an_import_need_their_permissions(sample_folder, reference_data, make_user):
    from django.test import Client

    client = Client()
    client.force_login(make_user(staff=True, perms=("django_q.view_schedule", "django_q.change_schedule")))
    url = reverse("admin:batchimport_importjob_schedule")
    client.post(url, {"name": "x", "cron": "0 2 * * *", "timezone": "UTC", "folder": "DATA"})
    assert not Schedule.objects.filter(name="batchimport:x").exists()
    schedule = services.import_schedule_create(name="y", path="DATA", cron="0 2 * * *")
    page = client.post(
        reverse("admin:django_q_schedule_changelist"),
        {"action": "run_now", "_selected_action": [schedule.pk]},
        follow=True,
    )
    assert "batchimport.start_import" in page.content.decode() and not ImportJob.objects.exists()
