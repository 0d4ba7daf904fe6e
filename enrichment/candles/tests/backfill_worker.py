"""A backfill worker for test_backfill_resume: run as a real process, slowed down so the
test can kill it between chunks. argv: state id, seconds to sleep per chunk."""

from __future__ import annotations

import sys
import time
from datetime import timedelta

import django

if __name__ == "__main__":
    django.setup()
    from enrichment.candles import source_registry
    from enrichment.candles.local_source import MARKET_DATA_SOURCE
    from enrichment.candles.services.backfill import backfill_run
    from enrichment.models import BackfillState

    local = source_registry.get_source(MARKET_DATA_SOURCE)

    class Slow:
        code = MARKET_DATA_SOURCE

        def fetch(self, **kwargs):
            time.sleep(float(sys.argv[2]))
            return local.fetch(**kwargs)

    source_registry.register_source(Slow())
    backfill_run(state=BackfillState.objects.get(pk=int(sys.argv[1])), lease=timedelta(seconds=1), worker="doomed")
