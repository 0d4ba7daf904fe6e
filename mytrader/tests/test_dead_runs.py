"""Recovery without waiting, for every run type: a run (or job, or backfill) whose process
died is found by an every-minute sweep, and cancel and retry work on it at once, through
the same doors operators use (the API's run resources; the admin calls the same services).

A dead run is what a killed process leaves: `running`, its last heartbeat some seconds
old, and no session holding its lock (PostgreSQL released it with the process)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.utils import timezone
from django_q.models import Schedule

from batchimport import services as imports
from batchimport.models import ImportFile, ImportJob, ImportStatus
from corrections import services as corrections
from corrections.models import CorrectionRun, Phase
from enrichment.models import AssetEnrichmentRun, FeatureRun
from etl import recovery
from etl.metrics import run_models
from etl.models import PipelineRun, RunHeartbeat, RunRecord, RunStatus

pytestmark = pytest.mark.django_db
BEAT_AGO = recovery.DEAD_AFTER + timedelta(seconds=5)
SCHEDULES = (
    "etl.migrations.0007_heartbeats_signing_probes:create_sweep",
    "batchimport.migrations.0006_fill_orphan_sweep_schedule:create",
    "corrections.migrations.0003_fill_interrupted_sweep_schedule:create",
)


def _dead(run: RunRecord) -> RunRecord:
    type(run).objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, started_at=timezone.now())
    RunHeartbeat.objects.create(run_model=run._meta.label_lower, run_id=run.pk, beat_at=timezone.now() - BEAT_AGO)
    run.refresh_from_db()
    return run


def _pipeline() -> PipelineRun:
    return _dead(PipelineRun.objects.create(steps_requested=["sync"]))


def _features() -> FeatureRun:
    return _dead(FeatureRun.objects.create(params={"symbols": [], "timeframes": [], "full": False}))


def _assets() -> AssetEnrichmentRun:
    return _dead(AssetEnrichmentRun.objects.create(options={}))


def _correction() -> CorrectionRun:
    run = corrections.correction_run_create(requested_by="test")
    CorrectionRun.objects.filter(pk=run.pk).update(phase=Phase.EXECUTING, id_low=1, id_high=0, last_id=0)
    return _dead(run)


@pytest.fixture
def data_root(tmp_path, settings):
    settings.DATA_ROOT = tmp_path
    return tmp_path


def _import_job(data_root) -> ImportJob:
    (data_root / "NYSE").mkdir()
    (data_root / "NYSE" / "KO.csv").write_text("Date,Open,High,Low,Close,Volume\n2024-01-02,1,2,0.5,1.5,100\n")
    job = imports.import_job_create(path="NYSE")
    ImportFile.objects.filter(job=job).update(status=ImportStatus.RUNNING, attempts=1, claimed_by="dead:1")
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.RUNNING)
    return job


@dataclass(frozen=True)
class Door:
    make: object
    url: str
    perms: tuple[str, ...]


DOORS = {
    "pipeline": Door(_pipeline, "/api/runs/pipeline/{id}/", ("etl.run_pipeline",)),
    "features": Door(_features, "/api/runs/features/{id}/", ("enrichment.compute_features",)),
    "asset-enrichment": Door(_assets, "/api/runs/asset-enrichment/{id}/", ("enrichment.run_enrichment",)),
    "correction": Door(_correction, "/api/runs/corrections/{id}/", ("corrections.execute_correction",)),
}


def test_every_run_type_names_a_dead_run_sweep_that_runs_every_minute():
    for path in SCHEDULES:  # the data migrations' rows (a transactional test may have flushed them)
        module, function = path.split(":")
        getattr(importlib.import_module(module), function)(django_apps, None)
    for model in run_models():
        module, _, function = model.dead_run_sweep.rpartition(".")
        assert callable(getattr(importlib.import_module(module), function)), model
        schedule = Schedule.objects.get(func=model.dead_run_sweep)
        assert (schedule.schedule_type, schedule.minutes) == (Schedule.MINUTES, 1), model
    assert {m._meta.label for m in run_models()} == {
        "etl.PipelineRun",
        "batchimport.ImportJob",
        "batchimport.ImportFile",
        "corrections.CorrectionRun",
        "enrichment.FeatureRun",
        "enrichment.AssetEnrichmentRun",
        "etl.SummaryRecount",
    }
    # backfills are not run records: their sweep runs with the heartbeat sweep
    assert "backfills" in recovery.runs_heartbeat_sweep().work_recovered


@pytest.mark.parametrize("kind", ["pipeline", "features", "asset-enrichment"])
def test_the_heartbeat_sweep_fails_a_dead_run_of_each_type_with_the_reason(kind, reference_data):
    run = DOORS[kind].make()
    assert recovery.runs_heartbeat_sweep().runs_failed == {run._meta.label_lower: (run.pk,)}
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.error.startswith("its process stopped")


def test_the_correction_sweep_fails_a_dead_correction_naming_where_it_resumes(reference_data):
    run = _correction()
    assert corrections.correction_interrupted_sweep().runs_failed == (run.pk,)
    assert recovery.runs_heartbeat_sweep().runs_failed == {}  # its own sweep, not two
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "execute it again to resume" in run.error


def test_the_orphan_sweep_queues_again_a_dead_import(data_root, reference_data):
    job = _import_job(data_root)
    assert imports.orphaned_files_requeue().files_requeued == 1
    assert recovery.runs_heartbeat_sweep().runs_failed == {}
    assert ImportFile.objects.get(job=job).status == ImportStatus.QUEUED


@pytest.mark.parametrize("kind", sorted(DOORS))
def test_cancel_ends_a_dead_run_at_once(kind, reference_data, api_client_for):
    door = DOORS[kind]
    run = door.make()
    response = api_client_for(staff=True, perms=door.perms).post(door.url.format(id=run.pk) + "cancel/")
    assert response.status_code == 200, response.json()
    run.refresh_from_db()
    assert (run.status, run.cancel_requested) == (RunStatus.CANCELLED, True)
    assert "its process had stopped" in run.error and run.finished_at is not None


@pytest.mark.parametrize("kind", sorted(DOORS))
def test_retry_takes_up_a_dead_run_at_once(kind, reference_data, api_client_for, django_capture_on_commit_callbacks):
    door = DOORS[kind]
    run = door.make()
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = api_client_for(staff=True, perms=door.perms).post(door.url.format(id=run.pk) + "retry/")
    assert response.status_code == 202, response.json()
    assert len(queued) == 1  # handed to a worker: a new run, or this one resumed (a correction)


def test_cancel_and_retry_work_on_a_dead_import_job(data_root, reference_data, api_client_for):
    job = _import_job(data_root)
    client = api_client_for(staff=True, perms=("batchimport.cancel_import", "batchimport.retry_import"))
    assert client.post(f"/api/runs/import-jobs/{job.pk}/cancel/").status_code == 200
    assert ImportJob.objects.get(pk=job.pk).status == ImportStatus.CANCELLED
    job = _import_job_again(job)
    assert client.post(f"/api/runs/import-jobs/{job.pk}/retry/", {}, format="json").status_code == 202


def _import_job_again(job: ImportJob) -> ImportJob:
    ImportFile.objects.filter(job=job).update(status=ImportStatus.RUNNING, claimed_by="dead:2")
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.RUNNING, cancel_requested=False)
    return job
