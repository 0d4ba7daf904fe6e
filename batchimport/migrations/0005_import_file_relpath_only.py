# Import files keep only their path relative to DATA_ROOT (0004 made every path relative).

from pathlib import Path

from django.conf import settings
from django.db import migrations, models

FILE_PATH_FROM_RELPATH = """
UPDATE import_files SET path = CASE WHEN starts_with(relpath, '/') THEN relpath
                                    ELSE %(root)s || '/' || relpath END
"""


def fill_file_path(apps, schema_editor):
    """Reverse only: the re-added absolute path, before its unique constraint returns."""
    with schema_editor.connection.cursor() as cur:
        cur.execute(FILE_PATH_FROM_RELPATH, {"root": str(Path(settings.DATA_ROOT).resolve())})


class Migration(migrations.Migration):

    dependencies = [
        ('batchimport', '0004_fill_relative_paths'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='importfile',
            name='uniq_import_file_job_path',
        ),
        migrations.RemoveIndex(
            model_name='importfile',
            name='import_file_fingerprint',
        ),
        # a default only so that the reverse can add the column back to existing rows
        migrations.AlterField(
            model_name='importfile',
            name='path',
            field=models.CharField(max_length=500, default=''),
        ),
        migrations.RunPython(migrations.RunPython.noop, fill_file_path),
        migrations.RemoveField(
            model_name='importfile',
            name='path',
        ),
        migrations.AlterField(
            model_name='importjob',
            name='path',
            field=models.CharField(help_text="Folder or file, relative to DATA_ROOT ('.' for DATA_ROOT itself)", max_length=500),
        ),
        migrations.AddIndex(
            model_name='importfile',
            index=models.Index(fields=['relpath', 'size', 'sha256'], name='import_file_fingerprint'),
        ),
        migrations.AddConstraint(
            model_name='importfile',
            constraint=models.UniqueConstraint(fields=('job', 'relpath'), name='uniq_import_file_job_relpath'),
        ),
    ]
