"""The orphan sweep runs every minute as a django-q2 schedule: files left
`running` by a dead worker go back in the queue (see services/orphans.py)."""

from django.db import migrations

NAME = "batchimport:orphan-sweep"


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.get_or_create(
        name=NAME,
        defaults={
            "func": "batchimport.tasks.orphaned_files_requeue",
            "schedule_type": "I",
            "minutes": 1,
            "repeats": -1,
        },
    )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("batchimport", "0005_import_file_relpath_only")]

    operations = [migrations.RunPython(create, remove)]
