"""The admin's doors to schedules: create a pipeline schedule (the same service as
schedule-recurring) and run any schedule now (the same service as
POST /api/schedules/{id}/run-now), each with its permission."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule

from etl import services
from etl.models import PipelineRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(make_user):
    """A staff user of the admin holding only the permissions given."""

    def make(*perms: str) -> Client:
        client = Client()
        client.force_login(make_user(staff=True, perms=perms))
        return client

    return make


def test_the_admin_creates_a_pipeline_schedule_in_its_zone(reference_data, admin_client):
    url = reverse("admin:etl_pipeline_schedule")
    assert admin_client.get(url).status_code == 200
    changelist = admin_client.get(reverse("admin:etl_pipelinerun_changelist")).content.decode()
    assert url in changelist  # the "Schedule the pipeline" link
    form = {"name": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Istanbul", "steps": ["sync", "validate"]}
    response = admin_client.post(url, {**form, "max_minutes": "30", "continue_on_failure": "on"})
    schedule = Schedule.objects.get(name="nightly")
    assert response.status_code == 302 and response["Location"].endswith(f"/{schedule.pk}/change/")
    kwargs = eval(schedule.kwargs)  # noqa: S307 - the repr the service wrote, as django-q2 reads it
    assert (kwargs["tz"], kwargs["steps"], kwargs["max_seconds"]) == ("Europe/Istanbul", ["sync", "validate"], 1800)


def test_the_pipeline_schedule_page_shows_refusals_and_needs_its_permission(reference_data, admin_client, staff_client):
    url = reverse("admin:etl_pipeline_schedule")
    bad = admin_client.post(url, {"name": "x", "cron": "nightly", "timezone": "UTC"})
    assert bad.status_code == 200 and "not a valid cron expression" in bad.content.decode()
    assert not Schedule.objects.filter(name="x").exists()
    refused = staff_client().post(url, {"name": "y", "cron": "0 2 * * *", "timezone": "UTC"})
    assert refused.status_code == 302 and not Schedule.objects.filter(name="y").exists()


def test_run_now_queues_what_the_schedule_runs_and_leaves_its_next_run(
    reference_data, admin_client, monkeypatch, django_capture_on_commit_callbacks
):
    result = services.pipeline_schedule(cron="0 2 * * *", tz="UTC", name="nightly", steps=["validate"])
    before = Schedule.objects.get(pk=result.schedule_id).next_run
    changelist = reverse("admin:django_q_schedule_changelist")
    assert admin_client.get(changelist).status_code == 200
    monkeypatch.setattr(Conf, "SYNC", True)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(changelist, {"action": "run_now", "_selected_action": [result.schedule_id]})
    assert response.status_code == 302
    run = PipelineRun.objects.get()
    assert (run.trigger, run.requested_by, run.status) == ("schedule", "schedule:nightly", "succeeded")
    assert [step.name for step in run.step_runs.all()] == ["validate"]
    assert Schedule.objects.get(pk=result.schedule_id).next_run == before


def test_run_now_needs_the_permission_of_what_the_schedule_runs(reference_data, staff_client):
    result = services.pipeline_schedule(cron="0 2 * * *", tz="UTC", name="nightly")
    changelist = reverse("admin:django_q_schedule_changelist")
    client = staff_client("django_q.view_schedule", "django_q.change_schedule")
    response = client.post(changelist, {"action": "run_now", "_selected_action": [result.schedule_id]}, follow=True)
    assert "etl.run_pipeline" in response.content.decode() and not OrmQ.objects.exists()


def test_the_api_runs_a_schedule_now_with_the_same_service(
    reference_data, api_anon, api_client_for, django_capture_on_commit_callbacks
):
    result = services.pipeline_schedule(cron="0 2 * * *", tz="UTC", name="nightly", steps=["validate"])
    url = f"/api/schedules/{result.schedule_id}/run-now"
    assert api_anon.post(url).status_code == 401
    assert api_client_for().post(url).status_code == 403  # not staff
    assert api_client_for(staff=True).post(url).status_code == 403  # staff without etl.run_pipeline
    assert (
        api_client_for(staff=True, perms=("etl.run_pipeline",)).post("/api/schedules/999999/run-now").status_code == 404
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client_for(staff=True, perms=("etl.run_pipeline",)).post(url)
    assert response.status_code == 202
    body = response.json()
    assert (body["schedule_id"], body["func"]) == (result.schedule_id, "etl.tasks.pipeline_scheduled")
    task = OrmQ.objects.get().task
    assert task["name"] == body["task_id"] and task["kwargs"]["schedule_name"] == "nightly"


def test_a_schedule_whose_arguments_cannot_be_read_is_refused_with_a_reason(reference_data, admin_client):
    broken = Schedule.objects.create(name="broken", func="math.floor", kwargs="x=[", schedule_type="O")
    response = admin_client.post(
        reverse("admin:django_q_schedule_changelist"),
        {"action": "run_now", "_selected_action": [broken.pk]},
        follow=True,
    )
    assert "its arguments cannot be read" in response.content.decode() and not OrmQ.objects.exists()


def test_the_new_doors_read_in_turkish(reference_data, client, make_user):
    from mytrader.accounts.models import OperatorPreference

    operator = make_user(superuser=True)
    OperatorPreference.objects.create(user=operator, language="tr")
    client.force_login(operator)
    pages = {
        reverse("admin:etl_pipeline_schedule"): "İşlem hattını zamanla",
        reverse("admin:batchimport_importjob_schedule"): "İçe aktarma zamanla",
        reverse("admin:enrichment_discover"): "Sembolleri keşfet",
        reverse("admin:enrichment_backfill_create"): "Geriye dönük doldurma oluştur",
        reverse("admin:batchimport_importjob_start"): "Piyasa içe aktarma ayarları",
        reverse("admin:django_q_schedule_changelist"): "Şimdi çalıştır",
    }
    for url, words in pages.items():
        assert words in client.get(url).content.decode(), url
