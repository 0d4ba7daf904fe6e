"""Every admin action names the permission it needs, and a staff user who can
only view a model never gets the actions that change data. A new action
without an entry here fails `test_matrix_names_every_admin_action`."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.test import RequestFactory

pytestmark = pytest.mark.django_db

READ_ONLY = "read-only"  # reports or downloads; changes nothing
THIRD_PARTY = "third-party"  # shipped by django-q2 / django-axes with their own checks

ACTIONS: dict[tuple[str, str], str] = {
    ("django_q.Success", "resubmit_task"): THIRD_PARTY,
    ("django_q.Failure", "resubmit_task"): THIRD_PARTY,
    ("axes.AccessAttempt", "cleanup_expired_attempts"): THIRD_PARTY,
    ("django_q.Schedule", "run_now"): "change",  # and the permission of what the schedule runs
    ("etl.Market", "validate_reference_data"): READ_ONLY,
    ("etl.PipelineRun", "cancel_runs"): "run",
    ("etl.PipelineRun", "run_again"): "run",
    ("etl.ApiToken", "revoke"): "change",
    ("etl.SummaryRecount", "recount_again"): "recount",
    ("etl.Symbol", "validate_symbols"): READ_ONLY,
    ("etl.Symbol", "clean_symbols"): "clean",
    ("batchimport.ImportJob", "cancel_jobs"): "cancel",
    ("batchimport.ImportJob", "retry_jobs"): "retry",
    ("batchimport.RejectedRow", "download_csv"): READ_ONLY,
    ("batchimport.ImportDeadLetter", "resubmit"): "retry",
    ("corrections.CorrectionRun", "preview_runs"): "view",
    ("corrections.CorrectionRun", "execute_runs"): "execute",
    ("corrections.CorrectionRun", "validate_runs"): "execute",
    ("corrections.CorrectionRun", "cancel_runs"): "execute",
    ("corrections.CorrectionRun", "rollback_runs"): "rollback",
    ("enrichment.EnrichmentStatus", "compute_features"): "compute",
    ("enrichment.EnrichmentStatus", "compute_features_full"): "compute",
    ("enrichment.FeatureRun", "cancel"): "compute",
    ("enrichment.BackfillState", "run_now"): "backfill",
    ("enrichment.BackfillState", "cancel"): "backfill",
    ("enrichment.LiveMarket", "poll_now"): "run_live_poll",
    ("enrichment.ProviderStatus", "reset_circuit"): "run_enrichment",
    ("enrichment.SymbolForEnrichment", "enrich_selected"): "run_enrichment",
    ("enrichment.SymbolForEnrichment", "infer_mappings"): "run_enrichment",
    ("enrichment.ProviderMapping", "validate_selected"): "run_enrichment",
    ("enrichment.EnrichmentDeadLetter", "resubmit"): "run_enrichment",
    ("enrichment.AssetEnrichmentRun", "cancel"): "run_enrichment",
}


def declared_actions() -> dict[tuple[str, str], object]:
    found = {}
    for model, model_admin in admin.site._registry.items():
        for action in model_admin.actions or []:
            name = action if isinstance(action, str) else action.__name__
            found[(model._meta.label, name)] = getattr(model_admin, name, action)
    return found


def test_matrix_names_every_admin_action():
    declared = declared_actions()
    missing = sorted(set(declared) - set(ACTIONS))
    stale = sorted(set(ACTIONS) - set(declared))
    assert not missing, f"admin actions without an entry: {missing}"
    assert not stale, f"entries for actions that no longer exist: {stale}"


def test_actions_declare_the_permission_the_matrix_says():
    for key, fn in declared_actions().items():
        expected = ACTIONS[key]
        if expected in (READ_ONLY, THIRD_PARTY):
            continue
        assert list(getattr(fn, "allowed_permissions", ())) == [expected], key


@pytest.mark.parametrize("key", [k for k, v in ACTIONS.items() if v not in (READ_ONLY, THIRD_PARTY, "view")])
def test_view_only_staff_never_gets_a_changing_action(key, django_user_model):
    label, action = key
    model = next(m for m in admin.site._registry if m._meta.label == label)
    model_admin = admin.site._registry[model]
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    view = Permission.objects.get(
        content_type__app_label=model._meta.app_label, codename=f"view_{model._meta.model_name}"
    )
    viewer.user_permissions.add(view)
    viewer = django_user_model.objects.get(pk=viewer.pk)
    request = RequestFactory().get("/admin/")
    request.user = viewer
    assert action not in model_admin.get_actions(request), f"{label}.{action} offered to a view-only user"
    boss = django_user_model.objects.create_superuser("boss", "b@example.com", "pw")
    request.user = boss
    assert action in model_admin.get_actions(request), f"{label}.{action} hidden from a superuser"
