# The task modules moved into the sub-domains (enrichment.tasks_features -> enrichment.candles.tasks,
# enrichment.tasks_assets -> enrichment.assets.tasks); django-q2 stores a schedule's task as a
# dotted path, so the stored paths move with them (both ways).
from django.db import migrations

TASK_PATHS = {
    "enrichment.tasks_features.features_scheduled": "enrichment.candles.tasks.features_scheduled",
    "enrichment.tasks_features.feature_run_execute": "enrichment.candles.tasks.feature_run_execute",
    "enrichment.tasks_features.backfill_run": "enrichment.candles.tasks.backfill_run",
    "enrichment.tasks_assets.assets_enrich": "enrichment.assets.tasks.assets_enrich",
    "enrichment.tasks_assets.dead_letters_resubmit": "enrichment.assets.tasks.enrichment_dead_letters_resubmit",
    "enrichment.tasks_assets.symbols_discover": "enrichment.assets.tasks.symbols_discover",
}


def _rewrite(apps, paths: dict[str, str]) -> None:
    Schedule = apps.get_model("django_q", "Schedule")
    for old, new in paths.items():
        Schedule.objects.filter(func=old).update(func=new)


def forwards(apps, schema_editor) -> None:
    _rewrite(apps, TASK_PATHS)


def backwards(apps, schema_editor) -> None:
    _rewrite(apps, {new: old for old, new in TASK_PATHS.items()})


class Migration(migrations.Migration):
    dependencies = [
        ("enrichment", "0002_merge_candles_providers"),
        ("django_q", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
