"""Import paths relative to DATA_ROOT: a job's folder and a file's relpath that
were stored absolute (as resolved on the host that created them) lose the
DATA_ROOT prefix, so a worker with the share mounted elsewhere finds them below
its own DATA_ROOT. Paths outside DATA_ROOT are left as they are.

The reverse puts DATA_ROOT in front of the jobs' paths again (files' relpaths
were always relative; 0005's reverse fills their absolute path)."""

from pathlib import Path

from django.conf import settings
from django.db import migrations


def _root() -> str:
    return str(Path(settings.DATA_ROOT).resolve())


TO_RELATIVE = """
UPDATE {table} SET {column} = CASE WHEN {column} = %(root)s THEN '.'
                                   ELSE substr({column}, length(%(root)s) + 2) END
WHERE {column} = %(root)s OR starts_with({column}, %(root)s || '/')
"""
TO_ABSOLUTE = """
UPDATE {table} SET {column} = CASE WHEN {column} = '.' THEN %(root)s ELSE %(root)s || '/' || {column} END
WHERE NOT starts_with({column}, '/')
"""
COLUMNS = (("import_jobs", "path"), ("import_files", "relpath"))


def to_relative(apps, schema_editor):
    with schema_editor.connection.cursor() as cur:
        for table, column in COLUMNS:
            cur.execute(TO_RELATIVE.format(table=table, column=column), {"root": _root()})


def to_absolute(apps, schema_editor):
    with schema_editor.connection.cursor() as cur:
        cur.execute(TO_ABSOLUTE.format(table="import_jobs", column="path"), {"root": _root()})


class Migration(migrations.Migration):
    dependencies = [("batchimport", "0003_fill_sla_schedule")]

    operations = [migrations.RunPython(to_relative, to_absolute)]
