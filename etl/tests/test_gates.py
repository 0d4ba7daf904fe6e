"""Quality gates of the validate step: an error gate fails the run naming the
gate, its value and threshold; a warning gate ends it succeeded with warnings."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator

from etl import services
from etl.errors import DomainError
from etl.models import PipelineRun, RunStatus
from etl.services import integrity

pytestmark = pytest.mark.django_db


@pytest.fixture
def folder_names(etl_steps_only, reference_data, make_candles, settings):
    """Linked candles whose asset class is the folder's word (the old system's problem)."""
    settings.ADMINS = [("Ops", "ops@example.com")]
    make_candles([("THYAO", "BIST")], asset_class="BIST")


def gate(summary: dict, name: str) -> dict:
    return next(g for g in summary["gates"] if g["name"] == name)


def test_a_breached_error_gate_fails_the_run_and_says_which(folder_names, mailoutbox):
    result = services.pipeline_run(steps=["sync", "validate"])
    assert result.status == RunStatus.FAILED
    assert result.error == "quality gate asset_class_consistency breached: 0.0 (needs == 100)"
    run = PipelineRun.objects.get(pk=result.run_id)
    consistency = gate(run.summary, "asset_class_consistency")
    assert (consistency["value"], consistency["threshold"], consistency["severity"]) == (0.0, 100.0, "error")
    assert consistency["breached"] is True and gate(run.summary, "symbol_coverage")["breached"] is False
    validate = run.step_runs.get(name="validate")
    assert validate.status == RunStatus.FAILED and "asset_class_consistency" in validate.error
    [mail] = mailoutbox
    assert "quality gate asset_class_consistency breached" in mail.subject


def test_a_run_may_lower_a_gate_to_a_warning(folder_names, mailoutbox):
    result = services.pipeline_run(
        steps=["sync", "validate"], options={"gates": {"asset_class_consistency": "warning"}}
    )
    assert result.status == RunStatus.SUCCEEDED
    summary = PipelineRun.objects.get(pk=result.run_id).summary
    assert summary["outcome"] == "succeeded with warnings"
    assert "validate: quality gate asset_class_consistency breached: 0.0 (needs == 100)" in summary["warnings"]
    assert mailoutbox == []


def test_the_severity_setting_turns_a_gate_off(folder_names, settings):
    settings.QUALITY_GATE_SEVERITY = {"asset_class_consistency": "off"}
    result = services.pipeline_run(steps=["sync", "validate"])
    assert result.status == RunStatus.SUCCEEDED
    assert gate(PipelineRun.objects.get(pk=result.run_id).summary, "asset_class_consistency")["breached"] is False


def test_an_unknown_gate_or_severity_is_refused():
    with pytest.raises(DomainError, match="unknown quality gate"):
        integrity.quality_gates_check(overall={}, overrides={"speed": "error"})
    with pytest.raises(DomainError, match="severity"):
        integrity.quality_gates_check(overall={}, overrides={"overall_quality": "fatal"})


def test_min_quality_score_and_min_data_completeness_set_their_gates(settings, monkeypatch):
    settings.MIN_QUALITY_SCORE, settings.MIN_DATA_COMPLETENESS = 0.6, 0.9
    monkeypatch.setattr(integrity, "_INDICATORS", {})
    integrity.register_indicator("data_completeness", lambda: 0.85)
    report = integrity.quality_gates_check(overall={"mean_symbol_quality_score": 70.0})
    by_name = {g.name: g for g in report.gates}
    assert (by_name["min_quality_score"].threshold, by_name["min_quality_score"].passed) == (60.0, True)
    assert (by_name["min_data_completeness"].value, by_name["min_data_completeness"].passed) == (0.85, False)
    assert report.outcome == "warning"
    # Nothing measured (an empty database) breaches nothing.
    monkeypatch.setattr(integrity, "_INDICATORS", {})
    assert integrity.quality_gates_check(overall={}).outcome == "passed"


def test_enrichment_off_skips_the_enrichment_steps_with_the_reason(etl_steps_only, reference_data, settings):
    settings.DATA_ENRICHMENT_ENABLED = False
    etl_steps_only.register_step("enrich", order=50, run=lambda *, options, progress=None: {"enriched": 1})
    result = services.pipeline_run(steps=["sync", "enrich"])
    enrich = next(s for s in result.steps if s.name == "enrich")
    assert (enrich.status, enrich.error) == (RunStatus.SKIPPED, "not run: DATA_ENRICHMENT_ENABLED is off")
    assert result.status == RunStatus.SUCCEEDED


def test_the_api_shows_the_outcome_and_each_gate(folder_names, api_client_for):
    result = services.pipeline_run(steps=["sync", "validate"])
    client = api_client_for(staff=True)
    body = client.get(f"/api/runs/pipeline/{result.run_id}/").json()
    assert body["outcome"] == "failed"
    consistency = gate(body, "asset_class_consistency")
    assert (consistency["value"], consistency["threshold"], consistency["op"]) == (0.0, 100.0, "==")
    assert (consistency["severity"], consistency["breached"]) == ("error", True)
    listed = client.get("/api/runs/pipeline/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert [r["outcome"] for r in rows if r["id"] == result.run_id] == ["failed"]
    assert result.outcome == "failed" and gate({"gates": result.gates}, "asset_class_consistency")["breached"]


def test_the_schema_documents_outcome_and_gates():
    schema = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    properties = schema["PipelineRun"]["properties"]
    assert properties["outcome"]["type"] == "string"
    assert properties["gates"]["type"] == "array"
    gate_fields = schema["GateResult"]["properties"]
    assert {"name", "value", "threshold", "severity", "breached"} <= set(gate_fields)


def test_the_admin_pages_show_the_outcome_and_the_breached_gate(folder_names, admin_client):
    warned = services.pipeline_run(
        steps=["sync", "validate"], options={"gates": {"asset_class_consistency": "warning"}}
    )
    changelist = admin_client.get(reverse("admin:etl_pipelinerun_changelist")).content.decode()
    assert "succeeded with warnings" in changelist
    detail = admin_client.get(reverse("admin:etl_pipelinerun_change", args=[warned.run_id])).content.decode()
    assert "Quality gates" in detail and "asset_class_consistency" in detail
    assert "breached (warning)" in detail and "== 100" in detail


def test_the_dashboard_names_the_breached_gate_with_value_and_threshold(folder_names, admin_client):
    services.pipeline_run(steps=["sync", "validate"])
    page = admin_client.get("/admin/").content.decode()
    panel = page[page.index('id="panel-pipeline"') :]
    panel = panel[: panel.index("</section>")]
    assert "failed" in panel and "asset_class_consistency: 0.0 (needs == 100.0)" in panel


def test_the_command_prints_the_outcome_and_each_breached_gate(folder_names, settings):
    settings.QUALITY_GATE_SEVERITY = {"asset_class_consistency": "warning"}
    out = StringIO()
    call_command("run_pipeline", "--steps", "sync,validate", stdout=out, stderr=StringIO())
    lines = out.getvalue().splitlines()
    assert any(line.startswith("pipeline run #") and "succeeded with warnings" in line for line in lines)
    assert "gate asset_class_consistency (warning): 0.0 (needs == 100)" in lines
