from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from etl import services
from etl.models import Market

pytestmark = pytest.mark.django_db


@pytest.fixture
def reference():
    services.reference_data_bootstrap()


def test_every_admin_changelist_add_and_change_page_renders(admin_client, admin_user, rf, reference):
    request = rf.get("/admin/")
    request.user = admin_user
    refused_add = set()
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        response = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        assert response.status_code == 200, f"{opts.label} changelist"
        # The add page renders exactly when the admin allows adding (even a superuser
        # cannot add to a history or audit table): 200, or 403 — never another answer.
        can_add = model_admin.has_add_permission(request)
        add = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
        assert add.status_code == (200 if can_add else 403), f"{opts.label} add"
        if not can_add:
            refused_add.add(opts.label)
        obj = model._default_manager.first()
        if obj is not None:
            change = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]))
            assert change.status_code == 200, f"{opts.label} change"
    # The read-only admins of this app and corrections' runs (started from "New analysis").
    assert {"etl.PipelineRun", "etl.DataCorrection", "corrections.CorrectionRun"} <= refused_add
    assert {"etl.Market", "etl.Symbol", "etl.AssetClass"}.isdisjoint(refused_add)


def test_admin_index_is_titled_for_the_product(admin_client):
    page = admin_client.get("/admin/").content.decode()
    assert "MyTrader Data Integrity" in page


def test_bootstrap_from_the_admin_confirms_then_runs(admin_client):
    url = reverse("admin:etl_reference_bootstrap")
    page = admin_client.get(url)
    assert page.status_code == 200
    assert b"Run bootstrap" in page.content
    assert Market.objects.count() == 0
    done = admin_client.post(url, follow=True)
    assert Market.objects.count() == 5
    assert b"Bootstrap done: 47 created, 0 updated" in done.content


def test_bootstrap_admin_view_refuses_staff_without_permission(client, django_user_model):
    user = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    client.force_login(user)
    client.post(reverse("admin:etl_reference_bootstrap"))
    assert Market.objects.count() == 0


def test_validate_action_reports_problems(admin_client, reference):
    Market.objects.get(code="BIST").sessions.all().delete()
    response = admin_client.post(
        reverse("admin:etl_market_changelist"),
        {"action": "validate_reference_data", "_selected_action": [Market.objects.first().pk]},
        follow=True,
    )
    assert b"Market BIST has no active trading session" in response.content


def test_queue_admin_pages_render(admin_client):
    for name in ("ormq", "schedule", "success", "failure"):
        assert admin_client.get(reverse(f"admin:django_q_{name}_changelist")).status_code == 200
