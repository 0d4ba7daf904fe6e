"""Run heartbeats (and their sweep, every minute as a django-q2 schedule: a run
left `running` by a dead process is marked failed with the reason, see
etl/recovery.py) and the signing probes of web and workers (etl/queue.py)."""

from django.db import migrations, models

SWEEP = "etl:heartbeat-sweep"


def create_sweep(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.get_or_create(
        name=SWEEP,
        defaults={"func": "etl.recovery.runs_heartbeat_sweep", "schedule_type": "I", "minutes": 1, "repeats": -1},
    )


def remove_sweep(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SWEEP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("etl", "0006_metric_totals"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.CreateModel(
            name="SigningProbe",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=200, unique=True)),
                ("signed", models.TextField()),
                ("written_at", models.DateTimeField()),
            ],
            options={
                "db_table": "signing_probes",
            },
        ),
        migrations.CreateModel(
            name="RunHeartbeat",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("run_model", models.CharField(help_text="app_label.model_name of the run", max_length=100)),
                ("run_id", models.BigIntegerField()),
                ("beat_at", models.DateTimeField()),
            ],
            options={
                "db_table": "run_heartbeats",
                "constraints": [models.UniqueConstraint(fields=("run_model", "run_id"), name="uniq_run_heartbeat")],
            },
        ),
        migrations.RunPython(create_sweep, remove_sweep),
    ]
