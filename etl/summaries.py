"""The integrity summaries: the numbers the status pages, the dashboard, health and
/metrics show, kept per market in a few rows instead of counted over the big tables.

Writers keep them in their own transactions without calling anything: statement-level
triggers (etl migration 0014 for `market_data`, `symbols`, `asset_classes`; the apps'
migrations for their tables) append one small aggregate per statement to the delta
tables. Deltas are insert-only, so concurrent writers never wait on a shared summary row
(a per-market counter row updated in place would hold its row lock until the writer
commits and serialise every writer of that market; docs/summaries.md has the
measurement). `summaries_fold` moves the deltas into the totals; a read sums the totals
and whatever is still pending, so a number is exact whether or not a fold has run.

A source (`SummarySource`) says which metrics a table feeds and how to count them from
the table itself: `etl.services.summaries.summary_recount` recounts every source,
reports drift and repairs it. Apps register their sources from `AppConfig.ready()`.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from etl import locks
from etl.events import table_vacuum_if_bloated

log = logging.getLogger(__name__)

# Fractional figures (a completeness, a mean score, a duration) are stored as integers
# scaled by SCALE, each row rounded once, so sums are exact in any order and a recount
# compares equal.
SCALE = 1_000_000


@dataclass(frozen=True, slots=True)
class SummarySource:
    """The metrics under `prefix` come from one table. `sql` counts them from that table:
    it returns (market, metric, bucket, value) rows and may use `%(since)s`, the oldest
    bucket kept when `window_hours` is set (older buckets are dropped by the fold)."""

    name: str
    prefix: str
    sql: str
    description: str = ""
    window_hours: int | None = None


_SOURCES: dict[str, SummarySource] = {}


def register_summary_source(source: SummarySource) -> None:
    _SOURCES[source.name] = source


def registered_sources() -> dict[str, SummarySource]:
    return dict(_SOURCES)


# ---------------------------------------------------------------------------
# Fold

_FOLD_PAIRS = """
WITH moved AS (
    DELETE FROM integrity_unlinked_pair_deltas RETURNING market, ticker, candles
), d AS (
    SELECT market, ticker, sum(candles) AS n FROM moved GROUP BY 1, 2
), before AS (
    SELECT d.market, d.ticker, d.n, COALESCE(p.candles, 0) AS old
    FROM d LEFT JOIN integrity_unlinked_pairs p ON p.market = d.market AND p.ticker = d.ticker
), up AS (
    INSERT INTO integrity_unlinked_pairs AS p (market, ticker, candles)
    SELECT market, ticker, n FROM d WHERE n <> 0 ORDER BY market, ticker
    ON CONFLICT (market, ticker) DO UPDATE SET candles = p.candles + EXCLUDED.candles
), counted AS (
    INSERT INTO integrity_summary_deltas (market, metric, value)
    SELECT market, 'candles.unlinked_pairs', sum(CASE WHEN old <= 0 AND old + n > 0 THEN 1
                                                     WHEN old > 0 AND old + n <= 0 THEN -1 ELSE 0 END)
    FROM before GROUP BY market
    HAVING sum(CASE WHEN old <= 0 AND old + n > 0 THEN 1 WHEN old > 0 AND old + n <= 0 THEN -1 ELSE 0 END) <> 0
    RETURNING 1
)
SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM counted)
"""

_FOLD_TALLIES = """
WITH moved AS (
    DELETE FROM integrity_symbol_tally_deltas RETURNING symbol_id, asset_class, candles
), d AS (
    SELECT symbol_id, asset_class, sum(candles) AS n FROM moved GROUP BY 1, 2 HAVING sum(candles) <> 0
), up AS (
    INSERT INTO integrity_symbol_tallies AS t (symbol_id, asset_class, candles)
    SELECT symbol_id, asset_class, n FROM d ORDER BY symbol_id, asset_class
    ON CONFLICT (symbol_id, asset_class) DO UPDATE SET candles = t.candles + EXCLUDED.candles
    RETURNING 1
)
SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM up)
"""

# A ".max" metric keeps the largest value seen (a longest duration); the others add up.
_FOLD_SUMMARY = """
WITH moved AS (
    DELETE FROM integrity_summary_deltas RETURNING market, metric, bucket, value
), folded AS (
    SELECT market, metric, bucket,
           CASE WHEN metric LIKE '%.max' THEN max(value) ELSE sum(value) END AS value
    FROM moved GROUP BY 1, 2, 3
), up AS (
    INSERT INTO integrity_summary AS t (market, metric, bucket, value, updated_at)
    SELECT market, metric, bucket, value, now() FROM folded ORDER BY market, metric, bucket
    ON CONFLICT (market, metric, bucket) DO UPDATE SET
        value = CASE WHEN t.metric LIKE '%.max' THEN greatest(t.value, EXCLUDED.value)
                     ELSE t.value + EXCLUDED.value END,
        updated_at = now()
    RETURNING 1
)
SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM up)
"""


@dataclass(frozen=True, slots=True)
class FoldResult:
    folded: bool  # False: another session was folding; nothing was done
    pairs: int = 0
    tallies: int = 0
    values: int = 0
    expired: int = 0
    moved: int = 0  # deltas moved, of every kind


DELTA_TABLES = ("integrity_unlinked_pair_deltas", "integrity_symbol_tally_deltas", "integrity_summary_deltas")


def summaries_fold(*, tallies: bool = True, wait: bool = False, vacuum: bool = False) -> FoldResult:
    """Move the pending deltas into the totals: the unlinked pairs first (a pair that gains
    or loses its last candle changes `candles.unlinked_pairs`), then the per-symbol
    tallies (unless `tallies` is False: only a change of a symbol's class reads them),
    then the numbers; drop hour buckets that left their source's window. One fold at a
    time; without `wait` a fold already running elsewhere makes this one a no-op. With
    `vacuum` (the schedule, the pipeline's steps; never a page's read) a delta table left
    bloated is vacuumed afterwards: the feature step of 100,000 series leaves some 300,000
    summary deltas, whose dead rows each read of the summaries scanned until autovacuum."""
    moved: dict[str, int] = {}
    with transaction.atomic(), connection.cursor() as cur:
        if wait:
            locks.xact_lock(locks.SUMMARY_FOLD)
        elif not locks.try_xact_lock(locks.SUMMARY_FOLD):
            return FoldResult(folded=False)
        cur.execute(_FOLD_PAIRS)
        moved["integrity_unlinked_pair_deltas"], pairs = cur.fetchone()
        folded_tallies = 0
        if tallies:
            cur.execute(_FOLD_TALLIES)
            moved["integrity_symbol_tally_deltas"], folded_tallies = cur.fetchone()
        cur.execute(_FOLD_SUMMARY)
        moved["integrity_summary_deltas"], values = cur.fetchone()
        expired = _expire_buckets(cur)
    if vacuum:
        for table in DELTA_TABLES:
            table_vacuum_if_bloated(table)
    return FoldResult(
        folded=True,
        pairs=pairs,
        tallies=folded_tallies,
        values=values,
        expired=expired,
        moved=sum(moved.values()),
    )


def _expire_buckets(cur) -> int:
    """Drop the hour buckets older than their source's window, in one statement."""
    windows = [(s.prefix + "%", window_start(s.window_hours)) for s in _SOURCES.values() if s.window_hours]
    if not windows:
        return 0
    condition = " OR ".join(["(metric LIKE %s AND bucket < %s)"] * len(windows))
    cur.execute(f"DELETE FROM integrity_summary WHERE {condition}", [p for w in windows for p in w])  # noqa: S608
    return cur.rowcount


def window_start(hours: int, *, now: datetime | None = None) -> datetime:
    """The oldest hour bucket a window of `hours` keeps (whole hours, the current one included)."""
    return hour_floor(now or timezone.now()) - timedelta(hours=hours - 1)


# ---------------------------------------------------------------------------
# Read

# Totals plus what is still pending; a pending change to an unlinked pair adds its transition.
_READ = """
WITH pair_deltas AS (
    SELECT market, ticker, sum(candles) AS n FROM integrity_unlinked_pair_deltas GROUP BY 1, 2
), pending_pairs AS (
    SELECT d.market,
           sum(CASE WHEN COALESCE(p.candles, 0) <= 0 AND COALESCE(p.candles, 0) + d.n > 0 THEN 1
                    WHEN COALESCE(p.candles, 0) > 0 AND COALESCE(p.candles, 0) + d.n <= 0 THEN -1
                    ELSE 0 END) AS value
    FROM pair_deltas d LEFT JOIN integrity_unlinked_pairs p ON p.market = d.market AND p.ticker = d.ticker
    GROUP BY d.market
)
SELECT market, metric, bucket, CASE WHEN metric LIKE '%%.max' THEN max(value) ELSE sum(value) END
FROM (
    SELECT market, metric, bucket, value FROM integrity_summary
    WHERE metric LIKE ANY(%(patterns)s) AND (%(buckets)s OR bucket IS NULL)
    UNION ALL
    SELECT market, metric, bucket, value FROM integrity_summary_deltas
    WHERE metric LIKE ANY(%(patterns)s) AND (%(buckets)s OR bucket IS NULL)
    UNION ALL
    SELECT market, 'candles.unlinked_pairs', NULL, value FROM pending_pairs
    WHERE 'candles.unlinked_pairs' LIKE ANY(%(patterns)s)
) x
GROUP BY 1, 2, 3
"""


class SummaryValues:
    """The numbers of a read: `value(metric, market)`, `total(metric)` over all markets,
    `by_market(metric)`, `buckets(metric)`, `markets(prefix)`."""

    def __init__(self, rows: Iterable[tuple[str, str, datetime | None, int]]):
        self._plain: dict[str, dict[str, int]] = defaultdict(dict)
        self._buckets: dict[str, dict[tuple[str, datetime], int]] = defaultdict(dict)
        for market, metric, bucket, value in rows:
            if bucket is None:
                self._plain[metric][market] = int(value)
            else:
                self._buckets[metric][(market, bucket)] = int(value)

    def value(self, metric: str, market: str) -> int:
        return self._plain.get(metric, {}).get(market, 0)

    def total(self, metric: str) -> int:
        return sum(self._plain.get(metric, {}).values())

    def by_market(self, metric: str) -> dict[str, int]:
        return dict(self._plain.get(metric, {}))

    def buckets(self, metric: str) -> dict[tuple[str, datetime], int]:
        return dict(self._buckets.get(metric, {}))

    def metrics(self, prefix: str) -> list[str]:
        return sorted(m for m in self._plain if m.startswith(prefix))

    def markets(self, prefix: str) -> set[str]:
        """Markets with a non-zero number under `prefix`."""
        return {
            market
            for metric, values in self._plain.items()
            if metric.startswith(prefix)
            for market, value in values.items()
            if value
        }

    def rows(self) -> list[dict[str, Any]]:
        plain = [
            {"market": market, "metric": metric, "bucket": None, "value": value}
            for metric, values in self._plain.items()
            for market, value in values.items()
        ]
        bucketed = [
            {"market": market, "metric": metric, "bucket": bucket, "value": value}
            for metric, values in self._buckets.items()
            for (market, bucket), value in values.items()
        ]
        return sorted(plain + bucketed, key=lambda r: (r["metric"], r["market"], r["bucket"] or datetime.min))


# A read folds at most this often in a process: a fold is a few round trips, and the numbers
# are exact without it (a page that reads the summaries three times folds once).
READ_FOLD_SECONDS = 2.0
_last_read_fold = float("-inf")


def summary_read(*prefixes: str, fold: bool = True, buckets: bool = False) -> SummaryValues:
    """The current numbers under the metric prefixes (e.g. "candles.", "symbols."): a
    few rows; with `buckets`, their hour and day buckets too. Folds the pending deltas
    first (at most every READ_FOLD_SECONDS, and only when no other fold is running), so
    the next read has less to add up; exact either way."""
    global _last_read_fold
    if fold and time.monotonic() - _last_read_fold >= READ_FOLD_SECONDS:
        _last_read_fold = time.monotonic()
        summaries_fold(tallies=False)
    with connection.cursor() as cur:
        cur.execute(_READ, {"patterns": [p + "%" for p in prefixes], "buckets": buckets})
        return SummaryValues(cur.fetchall())


_UNLINKED_PAIRS = """
SELECT ticker, market, sum(candles)::bigint AS n FROM (
    SELECT ticker, market, candles FROM integrity_unlinked_pairs
    UNION ALL SELECT ticker, market, candles FROM integrity_unlinked_pair_deltas
) x GROUP BY 1, 2 HAVING sum(candles) > 0
ORDER BY 3 DESC, 1, 2
"""

# Symbols (an SQL alias `s`) with no candle, from their tallies rather than market_data.
SYMBOL_WITHOUT_CANDLES_SQL = """
COALESCE((SELECT sum(x.candles) FROM (
    SELECT t.candles FROM integrity_symbol_tallies t WHERE t.symbol_id = s.id
    UNION ALL SELECT d.candles FROM integrity_symbol_tally_deltas d WHERE d.symbol_id = s.id
) x), 0) = 0
"""


def unlinked_pairs_read() -> list[tuple[str, str, int]]:
    """(ticker, market, candles) of every raw pair with candles but no symbol, most candles first."""
    with connection.cursor() as cur:
        cur.execute(_UNLINKED_PAIRS)
        return cur.fetchall()


def hour_floor(moment: datetime) -> datetime:
    """The start of the (UTC) hour bucket `moment` falls in."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hourly_since(values: SummaryValues, metric: str, since: datetime) -> dict[str, int]:
    """Per market, the hour buckets of `metric` that lie wholly after `since` (summed, or
    the largest for a ".max"). The hour `since` falls in is the caller's to count."""
    after = hour_floor(since) + timedelta(hours=1)
    out: dict[str, int] = {}
    for (market, bucket), value in values.buckets(metric).items():
        if bucket >= after:
            out[market] = max(out.get(market, value), value) if metric.endswith(".max") else out.get(market, 0) + value
    return out


def summaries_forget(*, table: str) -> None:
    """Take the candles of `table` (a `market_data` partition about to be dropped or
    detached, which fires no DELETE trigger) out of the summaries, in the caller's
    transaction: call it in the transaction that drops the partition."""
    with connection.cursor() as cur:
        cur.execute("SELECT integrity_candles_forget(%s::regclass)", [table])


# ---------------------------------------------------------------------------
# Runs per kind and hour: the dashboard's "runs and failures of the last 24 h"

# The SQL below is built from our own constants and the models' table names, never from input.
RUNS = "runs"
RUNS_WINDOW_HOURS = 48  # a day more than the 24 hours the dashboard shows
_HOUR = "date_trunc('hour', {ts} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
# What one run row adds: a run created in its hour, and a failure when it failed.
_RUN_VALUES = "(VALUES ('runs.created', 1), ('runs.failed', CASE WHEN {row}.status = 'failed' THEN 1 ELSE 0 END))"
_RUN_DELTAS = "INSERT INTO integrity_summary_deltas (market, metric, bucket, value)"

RUN_SUMMARY_FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION integrity_runs_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Statement level: a job that creates 100,000 file runs at once appends a few rows.
    {_RUN_DELTAS}
    SELECT TG_ARGV[0], v.metric, {_HOUR.format(ts="n.created_at")}, sum(v.value)
    FROM new_rows n CROSS JOIN LATERAL {_RUN_VALUES.format(row="n")} AS v(metric, value)
    GROUP BY 1, 2, 3 HAVING sum(v.value) <> 0;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION integrity_runs_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {_RUN_DELTAS}
    SELECT TG_ARGV[0], v.metric, {_HOUR.format(ts="o.created_at")}, -sum(v.value)
    FROM old_rows o CROSS JOIN LATERAL {_RUN_VALUES.format(row="o")} AS v(metric, value)
    GROUP BY 1, 2, 3 HAVING sum(v.value) <> 0;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION integrity_runs_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Row level, and only where it matters (see the trigger's WHEN): progress updates pass by.
    {_RUN_DELTAS}
    SELECT TG_ARGV[0], v.metric, v.bucket, sum(v.value) FROM (
        SELECT x.metric, {_HOUR.format(ts="NEW.created_at")} AS bucket, x.value
        FROM {_RUN_VALUES.format(row="NEW")} AS x(metric, value)
        UNION ALL
        SELECT x.metric, {_HOUR.format(ts="OLD.created_at")}, -x.value
        FROM {_RUN_VALUES.format(row="OLD")} AS x(metric, value)
    ) v GROUP BY 1, 2, 3 HAVING sum(v.value) <> 0;
    RETURN NULL;
END $$;
"""  # noqa: S608
_RUN_UPDATE_WHEN = (
    "WHEN ((OLD.status = 'failed') IS DISTINCT FROM (NEW.status = 'failed')"
    " OR OLD.created_at IS DISTINCT FROM NEW.created_at)"
)


def runs_summary_sql(tables: list[tuple[str, str]]) -> str:
    """The recount of `runs.*` over the run tables [(table, kind)], from %(since)s."""
    parts = " UNION ALL ".join(
        f"SELECT '{kind}' AS kind, created_at, status FROM {table} WHERE created_at >= %(since)s"  # noqa: S608
        for table, kind in tables
    )
    return f"""
SELECT r.kind AS market, v.metric, {_HOUR.format(ts="r.created_at")} AS bucket, sum(v.value) AS value
FROM ({parts}) r CROSS JOIN LATERAL {_RUN_VALUES.format(row="r")} AS v(metric, value)
GROUP BY 1, 2, 3 HAVING sum(v.value) <> 0
"""  # noqa: S608


def runs_summary_triggers_install(cur, tables: list[tuple[str, str]]) -> list[str]:
    """(Re)create the `runs.*` triggers on the run tables [(table, kind)]; the tables that had
    none before (their runs of the window are then counted once by the caller: a recount)."""
    cur.execute(RUN_SUMMARY_FUNCTIONS)
    cur.execute(
        "SELECT DISTINCT event_object_table FROM information_schema.triggers"
        " WHERE trigger_name = 'integrity_runs_ins' AND event_object_schema = current_schema()"
    )
    had = {row[0] for row in cur.fetchall()}
    for table, kind in tables:
        quoted = connection.ops.quote_name(table)
        literal = "'" + kind.replace("'", "''") + "'"
        for name, timing, body in (
            ("integrity_runs_ins", "AFTER INSERT", "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"),
            ("integrity_runs_del", "AFTER DELETE", "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT"),
            ("integrity_runs_upd", "AFTER UPDATE", f"FOR EACH ROW {_RUN_UPDATE_WHEN}"),
        ):
            function = {"ins": "insert", "del": "delete", "upd": "update"}[name[-3:]]
            cur.execute(f"DROP TRIGGER IF EXISTS {name} ON {quoted}")
            cur.execute(
                f"CREATE TRIGGER {name} {timing} ON {quoted} {body}"
                f" EXECUTE FUNCTION integrity_runs_{function}({literal})"
            )
    return [table for table, _ in tables if table not in had]


def runs_summary_triggers_drop(cur, tables: list[tuple[str, str]]) -> None:
    """Drop the `runs.*` triggers from the run tables [(table, kind)] (no summaries to write to)."""
    for table, _kind in tables:
        quoted = connection.ops.quote_name(table)
        for name in ("integrity_runs_ins", "integrity_runs_del", "integrity_runs_upd"):
            cur.execute(f"DROP TRIGGER IF EXISTS {name} ON {quoted}")


def runs_last_day(*, now: datetime | None = None) -> tuple[datetime, dict[str, dict[str, int]]]:
    """Runs created, and those of them that failed, per kind since the start of the hour 24
    hours ago (24 to 25 hours: whole hours of the summaries, never a count of the run
    tables): (since, {kind: {"created", "failed"}})."""
    since = hour_floor(now or timezone.now()) - timedelta(hours=24)
    values = summary_read("runs.", buckets=True)
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"created": 0, "failed": 0})
    for metric, key in (("runs.created", "created"), ("runs.failed", "failed")):
        for (kind, bucket), value in values.buckets(metric).items():
            if bucket >= since:
                out[kind][key] += value
    return since, dict(out)
