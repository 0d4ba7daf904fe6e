"""Yearly time partitions of the candle tables (`market_data`, `market_data_v2`).

Both tables are range-partitioned by `ts`, one partition per UTC calendar year, named
`<table>_y<YYYY>` (docs/storage.md says why a year). There is no DEFAULT partition: attaching
a new partition would make PostgreSQL scan the default one under lock. Instead
- the daily `candle-partitions` schedule makes this year's and the next years' partitions
  ahead of time (`partitions_maintain`),
- a writer about to insert candles calls `partitions_ensure` (or `partitions_ensure_from` with
  its staging table) for the span it writes, so an old history file gets its years made in
  the writer's own transaction instead of failing,
- retention, when configured, drops whole partitions (never a DELETE over a big table).

The DDL runs in the database function `candle_partition_ensure` (etl migration
0013_market_data_partitioned), which creates a plain table LIKE the parent and ATTACHes it:
ATTACH needs only a SHARE UPDATE EXCLUSIVE lock on the parent, so readers and writers of the
other years go on (CREATE TABLE … PARTITION OF would take ACCESS EXCLUSIVE).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from etl import locks
from etl.summaries import summaries_forget

# The partitioned candle tables; enrichment registers market_data_v2 from its ready().
PARTITIONED_TABLES: list[str] = ["market_data"]

# The partitioned tables whose rows the integrity summaries count (etl.summaries' triggers).
SUMMARISED_TABLES = ("market_data",)

MISSING_SQL = """
SELECT y FROM generate_series(%s::int, %s::int) AS y
WHERE to_regclass(format('%%I', %s || '_y' || y)) IS NULL
"""
PARTITIONS_SQL = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = to_regclass(%s) ORDER BY c.relname
"""


def register_partitioned_table(table: str) -> None:
    """Apps call it from ready() for each candle table they own."""
    if table not in PARTITIONED_TABLES:
        PARTITIONED_TABLES.append(table)


@dataclass(frozen=True, slots=True)
class PartitionsResult:
    created: dict[str, list[int]] = field(default_factory=dict)
    dropped: dict[str, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _year(moment: datetime) -> int:
    return moment.astimezone(UTC).year if moment.tzinfo else moment.year


def partitions_ensure(*, table: str, first: datetime, last: datetime) -> list[int]:
    """Make the missing yearly partitions of `table` for first..last; returns the years made.
    Costs one catalog query when they all exist; takes the table's partition lock (until the
    caller's transaction ends) only when one is missing."""
    # No cap on the span: the writers' input checks bound the dates (IMPORT_EARLIEST_DATE,
    # IMPORT_DAYS_AHEAD), and a long generated series legitimately spans centuries.
    low, high = sorted((_year(first), _year(last)))
    with connection.cursor() as cur:
        cur.execute(MISSING_SQL, [low, high, table])
        if not cur.fetchall():
            return []
        with transaction.atomic():
            locks.xact_lock(locks.CANDLE_PARTITIONS, table)
            cur.execute("SELECT candle_partition_ensure(%s, %s, %s)", [table, low, high])
            return list(cur.fetchone()[0] or [])


def partitions_ensure_from(*, table: str, source: str) -> list[int]:
    """`partitions_ensure` for the span of the `ts` column of a (staging) table `source`."""
    with connection.cursor() as cur:
        # `source` is a staging table name from our own code, never input.
        cur.execute(f"SELECT min(ts), max(ts) FROM {connection.ops.quote_name(source)}")  # noqa: S608
        first, last = cur.fetchone()
    if first is None:
        return []
    return partitions_ensure(table=table, first=first, last=last)


BRIN_SUMMARIZE_SQL = """
SELECT coalesce(sum(brin_summarize_new_values(x.indexrelid)), 0)
FROM pg_partition_tree(to_regclass(%s)) p
JOIN pg_index x ON x.indrelid = p.relid
JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am a ON a.oid = i.relam
WHERE p.isleaf AND a.amname = 'brin'
"""


def brin_summarize(*, table: str) -> int:
    """Summarize the page ranges of `table`'s BRIN indexes written since the last VACUUM (the
    index's `autosummarize` does it soon, but asynchronously): an unsummarized range matches every
    lookup, so a walk by id ranges right after a big import would read all the new pages each
    time. Cost: one read of those new pages. Returns the ranges summarized."""
    with connection.cursor() as cur:
        cur.execute(BRIN_SUMMARIZE_SQL, [table])
        return int(cur.fetchone()[0])


def partition_years(table: str) -> list[int]:
    """The years `table` has a partition for, oldest first."""
    with connection.cursor() as cur:
        cur.execute(PARTITIONS_SQL, [table])
        names = [row[0] for row in cur.fetchall()]
    pattern = re.compile(rf"^{re.escape(table)}_y(\d{{4}})$")
    return sorted(int(m.group(1)) for name in names if (m := pattern.match(name)))


def _drop(table: str, year: int) -> None:
    """Detach, then drop one partition. Outside a transaction the detach is CONCURRENTLY
    (no ACCESS EXCLUSIVE lock on the parent); inside one PostgreSQL allows only the plain form."""
    quote = connection.ops.quote_name
    name = f"{table}_y{year}"
    concurrently = "" if connection.in_atomic_block else " CONCURRENTLY"
    with connection.cursor() as cur:
        # Names are our own tables' and an integer year.
        cur.execute(f"ALTER TABLE {quote(table)} DETACH PARTITION {quote(name)}{concurrently}")
    # A detached partition's rows leave without a DELETE trigger: the summaries forget them in
    # the transaction that drops it (between the two they count rows the parent no longer has).
    with transaction.atomic(), connection.cursor() as cur:
        if table in SUMMARISED_TABLES:
            summaries_forget(table=name)
        cur.execute(f"DROP TABLE {quote(name)}")


def partitions_maintain(
    *, ahead_years: int | None = None, retention_years: int | None = None, now: datetime | None = None
) -> PartitionsResult:
    """Make this year's and the next `ahead_years` partitions of every candle table, and with a
    positive `retention_years` drop the partitions that ended more than that many full years
    ago (defaults: CANDLE_PARTITIONS_AHEAD_YEARS, CANDLE_RETENTION_YEARS). Idempotent."""
    ahead = settings.CANDLE_PARTITIONS_AHEAD_YEARS if ahead_years is None else ahead_years
    keep = settings.CANDLE_RETENTION_YEARS if retention_years is None else retention_years
    year = (now or timezone.now()).astimezone(UTC).year
    created: dict[str, list[int]] = {}
    dropped: dict[str, list[int]] = {}
    for table in PARTITIONED_TABLES:
        start, end = datetime(year, 1, 1, tzinfo=UTC), datetime(year + max(0, ahead), 1, 1, tzinfo=UTC)
        created[table] = partitions_ensure(table=table, first=start, last=end)
        if keep > 0:
            dropped[table] = [y for y in partition_years(table) if y < year - keep]
            for old in dropped[table]:
                _drop(table, old)
    return PartitionsResult(created=created, dropped=dropped)
