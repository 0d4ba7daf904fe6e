"""The weekly refresh of stale asset metadata (the old guide: "weekly for stale data
refresh"), a default django-q2 schedule. Created once, by name: an operator's edits in
the admin (time, options, or switching it off) are kept, and running the ensure again
changes nothing."""

from __future__ import annotations

from django_q.models import Schedule

from etl.models import Market

REFRESH_SCHEDULE = "asset enrichment: weekly stale refresh"
REFRESH_TASK = "enrichment.assets.tasks.assets_refresh_stale"
# Sunday 02:00 UTC, out of every market's hours. Symbols last enriched more than a week
# ago (or never) are asked again and the live providers' values replace the old ones.
REFRESH_CRON = "0 2 * * 0"
REFRESH_OPTIONS = {"selection": "stale", "stale_days": 7, "overwrite": True}


def refresh_schedule_ensure() -> bool:
    """Create the weekly refresh schedule when it is missing; True when it was created.
    Like the feature schedules it waits for the reference data (a database without
    markets has nothing to enrich); the enrich step ensures it too."""
    if not Market.objects.exists():
        return False
    _, created = Schedule.objects.get_or_create(
        name=REFRESH_SCHEDULE,
        defaults={
            "func": REFRESH_TASK,
            "kwargs": {"options": REFRESH_OPTIONS},
            "schedule_type": Schedule.CRON,
            "cron": REFRESH_CRON,
            "repeats": -1,
        },
    )
    return created
