"""A backfill worker for test_backfill_resume: run as a real process, slowed down so the
test can kill it between chunks. argv: state id, seconds to sleep per chunk."""

from __future__ import annotations

import sys
import time
from datetime import timedelta

import django

if __name__ == "__main__":
    django.setup()
    from enrichment import sources
    from enrichment.models import BackfillState
    from enrichment.services.backfill import backfill_run

    local = sources.get_source(sources.LOCAL)

    class Slow:
        code = sources.LOCAL

        def fetch(self, **kwargs):
            time.sleep(float(sys.argv[2]))
            return local.fetch(**kwargs)

    sources.register_source(Slow())
    backfill_run(state=BackfillState.objects.get(pk=int(sys.argv[1])), lease=timedelta(seconds=1), worker="doomed")
