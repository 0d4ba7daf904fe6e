"""Records of what was done are never deleted by hand: no Delete button, no
delete action, no delete URL, for any user (a superuser included)."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse

pytestmark = pytest.mark.django_db

RECORDS = [
    "corrections.CorrectionRun",
    "etl.PipelineRun",
    "etl.DataCorrection",
    "etl.DeadLetter",
    "batchimport.ImportJob",
    "batchimport.ImportFile",
    "batchimport.RejectedRow",
    "batchimport.ImportDeadLetter",
]


@pytest.fixture
def superuser_request(admin_user):
    request = RequestFactory().get("/admin/")
    request.user = admin_user
    return request


@pytest.mark.parametrize("label", RECORDS)
def test_no_user_may_delete_a_record_in_the_admin(label, superuser_request):
    model = apps.get_model(label)
    model_admin = admin.site._registry[model]
    assert model_admin.has_delete_permission(superuser_request) is False
    assert "delete_selected" not in model_admin.get_actions(superuser_request)
    for inline in model_admin.get_inline_instances(superuser_request):
        assert inline.has_delete_permission(superuser_request) is False


@pytest.mark.parametrize("label", RECORDS)
def test_the_changelist_offers_no_delete_action(label, admin_client):
    model = apps.get_model(label)
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    response = admin_client.get(url)
    assert response.status_code == 200
    assert b"delete_selected" not in response.content


def test_the_delete_url_of_a_record_is_refused(admin_client):
    model = apps.get_model("etl.DeadLetter")
    letter = model.objects.create(kind="test", ref="x", payload={}, error="boom", attempts=1)
    url = reverse("admin:etl_deadletter_delete", args=[letter.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=letter.pk).exists()
    change = admin_client.get(reverse("admin:etl_deadletter_change", args=[letter.pk]))
    assert change.status_code == 200 and url.encode() not in change.content
