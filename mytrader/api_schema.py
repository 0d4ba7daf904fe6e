"""Postprocessing of the OpenAPI schema (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]):
what spans the apps, so it is wired here.

- OpenAPI links: from each answer that creates or names a run (a 202, a 201 schedule,
  a list of runs) to the operations that read, cancel, retry or roll back that run.
  Clients (and schemathesis' stateful tests) follow them: a run created by a POST is
  then fetched, cancelled and retried.
- Aliases: each request body that follows the request policy
  (etl.api.request_policy.PolicySerializer) lists the old system's names it takes
  (`x-old-names`) and the old options it accepts without acting on them, with the
  reason (`x-ignored-options`); camelCase and PascalCase of every field are
  accepted everywhere (the schema's description says so).
"""

from __future__ import annotations

from typing import Any

from etl.api.request_policy import PolicySerializer

BODY_RUN_ID = "$response.body#/run_id"

# A run type's operations on one run, and the path parameter each takes.
RUN_OPERATIONS: dict[str, list[tuple[str, str]]] = {
    "pipeline": [
        ("runs_pipeline_retrieve", "id"),
        ("runs_pipeline_cancel_create", "id"),
        ("runs_pipeline_retry_create", "id"),
        ("etl_execution_history_retrieve", "id"),
    ],
    "import_job": [
        ("runs_import_jobs_retrieve", "id"),
        ("runs_import_jobs_cancel_create", "id"),
        ("runs_import_jobs_retry_create", "id"),
        ("batch_processing_jobs_status_retrieve", "job_id"),
        ("batch_processing_jobs_cancel_create", "job_id"),
        ("batch_processing_jobs_retry_create", "job_id"),
    ],
    "correction": [
        ("runs_corrections_retrieve", "id"),
        ("runs_corrections_cancel_create", "id"),
        ("runs_corrections_retry_create", "id"),
        ("runs_corrections_rollback_create", "id"),
    ],
    "asset_enrichment": [
        ("runs_asset_enrichment_retrieve", "id"),
        ("runs_asset_enrichment_cancel_create", "id"),
        ("runs_asset_enrichment_retry_create", "id"),
        ("etl_enrichment_runs_retrieve", "id"),
    ],
    "feature_run": [
        ("runs_features_retrieve", "id"),
        ("runs_features_cancel_create", "id"),
        ("runs_features_retry_create", "id"),
    ],
    "backfill": [("runs_backfills_retrieve", "id"), ("runs_backfills_retry_create", "id")],
    "import_schedule": [
        ("batch_processing_schedules_retrieve", "schedule_id"),
        ("schedules_run_now", "schedule_id"),
        ("batch_processing_schedules_destroy", "schedule_id"),
    ],
    "schedule": [("schedules_run_now", "schedule_id")],
}

# (operation, status) -> (run type, where the run's id is in the answer).
PRODUCERS: dict[tuple[str, str], tuple[str, str]] = {
    ("etl_execute_full_pipeline_create", "202"): ("pipeline", BODY_RUN_ID),
    ("etl_sync_symbols_create", "202"): ("pipeline", BODY_RUN_ID),
    ("etl_bootstrap_reference_data_create", "202"): ("pipeline", BODY_RUN_ID),
    ("runs_pipeline_retry_create", "202"): ("pipeline", BODY_RUN_ID),
    ("runs_pipeline_list", "200"): ("pipeline", "$response.body#/results/0/id"),
    ("etl_execution_history_list", "200"): ("pipeline", "$response.body#/results/0/id"),
    ("batch_processing_markets_import_create", "202"): ("import_job", BODY_RUN_ID),
    ("batch_processing_all_markets_import_create", "202"): ("import_job", BODY_RUN_ID),
    ("batch_processing_jobs_retry_create", "202"): ("import_job", BODY_RUN_ID),
    ("batch_processing_dead_letter_queue_resubmit_create", "202"): ("import_job", BODY_RUN_ID),
    ("runs_import_jobs_retry_create", "202"): ("import_job", BODY_RUN_ID),
    ("runs_import_jobs_list", "200"): ("import_job", "$response.body#/results/0/job_id"),
    ("etl_asset_class_correction_execute_create", "202"): ("correction", BODY_RUN_ID),
    ("etl_asset_class_correction_rollback_create", "202"): ("correction", BODY_RUN_ID),
    ("runs_corrections_retry_create", "202"): ("correction", BODY_RUN_ID),
    ("runs_corrections_rollback_create", "202"): ("correction", BODY_RUN_ID),
    ("runs_corrections_list", "200"): ("correction", "$response.body#/results/0/run_id"),
    ("etl_enrich_assets_create", "202"): ("asset_enrichment", BODY_RUN_ID),
    ("runs_asset_enrichment_retry_create", "202"): ("asset_enrichment", BODY_RUN_ID),
    ("runs_asset_enrichment_list", "200"): ("asset_enrichment", "$response.body#/results/0/id"),
    ("v1_enrichment_trigger_create", "202"): ("feature_run", BODY_RUN_ID),
    ("runs_features_retry_create", "202"): ("feature_run", BODY_RUN_ID),
    ("runs_features_list", "200"): ("feature_run", "$response.body#/results/0/id"),
    ("runs_backfills_create", "202"): ("backfill", BODY_RUN_ID),
    ("runs_backfills_retry_create", "202"): ("backfill", BODY_RUN_ID),
    ("runs_backfills_list", "200"): ("backfill", "$response.body#/results/0/id"),
    ("batch_processing_schedules_all_markets_create", "201"): ("import_schedule", "$response.body#/id"),
    ("etl_schedule_recurring_create", "201"): ("schedule", "$response.body#/schedule_id"),
    ("etl_schedule_recurring_create", "200"): ("schedule", "$response.body#/schedule_id"),
}


def _operations(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        op["operationId"]: op
        for methods in result.get("paths", {}).values()
        for op in methods.values()
        if isinstance(op, dict) and "operationId" in op
    }


def links_add(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """OpenAPI links from every answer that names a run to the operations on that run."""
    operations = _operations(result)
    for (producer, status), (kind, expression) in PRODUCERS.items():
        response = operations.get(producer, {}).get("responses", {}).get(status)
        if response is None:
            continue
        links = response.setdefault("links", {})
        for target, parameter in RUN_OPERATIONS[kind]:
            if target in operations and target != producer:
                links[target] = {"operationId": target, "parameters": {parameter: expression}}
    return result


def _policy_serializer(component) -> type[PolicySerializer] | None:
    obj = getattr(component, "object", None)
    cls = obj if isinstance(obj, type) else type(obj)
    return cls if isinstance(cls, type) and issubclass(cls, PolicySerializer) else None


def aliases_add(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """Each policy request body's old names and ignored old options, as extensions and in its description."""
    schemas = result.get("components", {}).get("schemas", {})
    for component in generator.registry._components.values():
        cls = _policy_serializer(component)
        schema = schemas.get(component.name)
        if cls is None or schema is None:
            continue
        notes = ["Field names are accepted in snake_case, camelCase and PascalCase (an unknown key is a 400)."]
        if cls.old_names:
            schema["x-old-names"] = dict(cls.old_names)
            notes.append("Old names: " + ", ".join(f"{old} = {ours}" for old, ours in cls.old_names.items()) + ".")
        if cls.ignored_options:
            schema["x-ignored-options"] = dict(cls.ignored_options)
            notes.append(
                "Accepted and not acted on (returned under ignored_options): " + ", ".join(cls.ignored_options) + "."
            )
        # A serializer without a docstring of its own would show PolicySerializer's (written for developers).
        own = schema.get("description", "") if cls.__dict__.get("__doc__") else ""
        schema["description"] = " ".join(filter(None, [own, *notes]))
    return result
