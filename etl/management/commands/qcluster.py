"""`qcluster`, refusing to start when this worker cannot read the tasks the web signs.

django-q2 signs every task with SECRET_KEY; a cluster with another key fails
each task it pulls with a bad signature, and the runs stay `queued`. This
command (it shadows django-q2's: `etl` comes before `django_q` in
INSTALLED_APPS) checks the web's signing probe first, then starts the cluster.
"""

from __future__ import annotations

import logging

from django.core.management.base import CommandError
from django.db import DatabaseError
from django_q.management.commands.qcluster import Command as ClusterCommand

from etl.queue import worker_key_check

log = logging.getLogger("etl.queue")


class Command(ClusterCommand):
    help = "Starts a Django Q Cluster once this worker can read the tasks the web signs."

    def handle(self, *args, **options):
        try:
            check = worker_key_check()
        except DatabaseError as exc:
            raise CommandError(f"cannot check the signing key: the database is not reachable ({exc})") from exc
        if not check.ok:
            log.error("worker refuses to start: %s", check.reason)
            raise CommandError(f"worker refuses to start: {check.reason}")
        log.info("signing key checked: %s", check.reason)
        super().handle(*args, **options)
