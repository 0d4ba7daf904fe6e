"""Metrics that any process counts and every web process exports.

The work happens in django-q2 workers (often on other hosts) and /metrics is
served by web processes, so an in-memory counter is seen by nobody. Instead
every increment is appended to `metric_deltas` (insert-only: concurrent writers
never wait on a shared counter row) and each scrape folds the deltas into
`metric_totals`, which nothing prunes: a counter there only grows, whatever
happens to the rows the events came from. The `metrics-fold` schedule folds
every minute too, so a scrape never finds more than a minute of deltas pending
(`metrics_fold`).

Three ways in:
- `DbCounter` / `DbGauge` / `DbHistogram`: drop-in for prometheus_client's
  objects (`.labels(...).inc()`, `.set()`, `.observe()`), so a service that
  counts keeps its one line;
- `event_count(family, n, **labels)`: the same as a plain function;
- `EventTrigger`: a row trigger that appends a delta when a table's row makes a
  transition (a run finishing, an SLA flag turning true), so the count does not
  depend on which code path made the change. Run tables get theirs for free.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from django.db import connection, transaction
from prometheus_client.core import Metric

from etl import locks

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
# The run statuses that end a run; every other one (queued, running) is on its way.
OPEN_RUN_STATUSES = ("queued", "running")
DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 1800, 3600, 7200)

_HELP: dict[str, tuple[str, str]] = {}
_LABELLED: dict[str, bool] = {}


def run_kind(model) -> str:
    """The low-cardinality `kind` label of a run model (its `metrics_kind`)."""
    return getattr(model, "metrics_kind", model._meta.model_name)


def _family_name(name: str, typ: str) -> str:
    return name[: -len("_total")] if typ == COUNTER and name.endswith("_total") else name


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else str(float(bound))


# Inside `deltas_batched()`: the deltas collected, to be written with one insert at its end.
_BATCH: ContextVar[list | None] = ContextVar("metric_deltas_batch", default=None)


@contextmanager
def deltas_batched() -> Iterator[None]:
    """Every counter, gauge and histogram change made inside is written with one insert when
    the block ends (a caller that records many events at once: the provider layer's fetch log)."""
    if _BATCH.get() is not None:  # already collecting: the outer block writes them
        yield
        return
    collected: list = []
    token = _BATCH.set(collected)
    try:
        yield
    finally:
        _BATCH.reset(token)
    _append(collected)


def _append(rows: Iterable[tuple[str, str, str, dict, str, float]]) -> None:
    """Insert deltas: (family, sample, type, labels, op, value)."""
    rows = list(rows)
    if not rows:
        return
    batch = _BATCH.get()
    if batch is not None:
        batch.extend(rows)
        return
    placeholders = ", ".join(["(%s, %s, %s, %s::jsonb, %s, %s)"] * len(rows))
    params = [
        p
        for family, sample, typ, labels, op, value in rows
        for p in (family, sample, typ, json.dumps(labels, sort_keys=True), op, float(value))
    ]
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO metric_deltas (family, sample, type, labels, op, value) VALUES {placeholders}",  # noqa: S608
            params,
        )


def _labels(names: tuple[str, ...], args: tuple, kwargs: dict) -> dict[str, str]:
    if args and kwargs:
        raise ValueError("labels: positional or keyword values, not both")
    values = dict(zip(names, args, strict=True)) if args else kwargs
    if set(values) != set(names):
        raise ValueError(f"labels: expected {sorted(names)}, got {sorted(values)}")
    return {name: str(value) for name, value in values.items()}


class _DbMetric:
    typ = ""

    def __init__(self, name: str, documentation: str, labelnames: Iterable[str] = (), **_ignored):
        self.family = _family_name(name, self.typ)
        self.labelnames = tuple(labelnames)
        self._values: dict[str, str] = {}
        _HELP[self.family] = (documentation, self.typ)
        _LABELLED[self.family] = bool(self.labelnames)

    def labels(self, *args, **kwargs):
        child = object.__new__(type(self))
        child.__dict__.update(self.__dict__)
        child._values = _labels(self.labelnames, args, kwargs)
        return child

    def _label_values(self) -> dict[str, str]:
        if self.labelnames and not self._values:
            raise ValueError(f"{self.family}: call .labels() first")
        return self._values


class DbCounter(_DbMetric):
    """A counter that only grows, counted in the database (see the module docstring)."""

    typ = COUNTER

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("counters only grow")
        if amount:
            _append([(self.family, f"{self.family}_total", COUNTER, self._label_values(), "add", amount)])


class DbGauge(_DbMetric):
    """A gauge whose last `set()` (in any process) is exported."""

    typ = GAUGE

    def set(self, value: float) -> None:
        _append([(self.family, self.family, GAUGE, self._label_values(), "set", value)])


class DbHistogram(_DbMetric):
    """A histogram whose buckets are counters in the database."""

    typ = HISTOGRAM

    def __init__(self, name: str, documentation: str, labelnames: Iterable[str] = (), buckets=DURATION_BUCKETS):
        super().__init__(name, documentation, labelnames)
        self.buckets = tuple(float(b) for b in buckets if not math.isinf(b)) + (math.inf,)

    def observe(self, amount: float) -> None:
        labels = self._label_values()
        rows = [
            (self.family, f"{self.family}_bucket", HISTOGRAM, {**labels, "le": _le(b)}, "add", 1)
            for b in self.buckets
            if amount <= b
        ]
        rows.append((self.family, f"{self.family}_count", HISTOGRAM, labels, "add", 1))
        rows.append((self.family, f"{self.family}_sum", HISTOGRAM, labels, "add", amount))
        _append(rows)

    def observe_many(self, amounts: Iterable[float]) -> None:
        """`observe` each of `amounts`, written as one delta per bucket (not one per amount)."""
        amounts = list(amounts)
        if not amounts:
            return
        labels = self._label_values()
        rows = [
            (self.family, f"{self.family}_bucket", HISTOGRAM, {**labels, "le": _le(b)}, "add", n)
            for b in self.buckets
            if (n := sum(1 for a in amounts if a <= b))
        ]
        rows.append((self.family, f"{self.family}_count", HISTOGRAM, labels, "add", len(amounts)))
        rows.append((self.family, f"{self.family}_sum", HISTOGRAM, labels, "add", sum(amounts)))
        _append(rows)


def event_count(family: str, n: float = 1, **labels: str) -> None:
    """Count `n` events of `family` (exported as `<family>_total`) from any process."""
    if n < 0:
        raise ValueError("counters only grow")
    family = _family_name(family, COUNTER)
    _append([(family, f"{family}_total", COUNTER, {k: str(v) for k, v in labels.items()}, "add", n)])


# ---------------------------------------------------------------------------
# Scrape side

# An `obs` delta is one observation of a histogram with DURATION_BUCKETS (a run's duration,
# appended by the run tables' trigger: one row where its buckets, count and sum were eleven or
# twelve, at 100,000 import files a run): the fold counts them per series first, then makes
# those samples from the counts (a bucket that no observation reached gets no row, as before).
_BOUNDS = (*DURATION_BUCKETS, math.inf)
_OBS_BUCKETS = ", ".join(
    "count(*)" if math.isinf(b) else f"count(*) FILTER (WHERE value <= {float(b)!r})" for b in _BOUNDS
)
_OBS_LABELS = "ARRAY[" + ", ".join(f"'{_le(b)}'" for b in _BOUNDS) + "]"
# Returns the number of deltas moved.
FOLD_SQL = f"""
WITH moved AS (DELETE FROM metric_deltas RETURNING id, family, sample, type, labels, op, value),
observed AS (
    SELECT family, type, labels, count(*) AS n, sum(value) AS total, ARRAY[{_OBS_BUCKETS}] AS cumulative
    FROM moved WHERE op = 'obs' GROUP BY family, type, labels
), expanded AS (
    SELECT id, family, sample, type, labels, op, value FROM moved WHERE op <> 'obs'
    UNION ALL
    SELECT 0, o.family, o.family || '_bucket', o.type, o.labels || jsonb_build_object('le', b.le), 'add', b.n
    FROM observed o CROSS JOIN LATERAL unnest({_OBS_LABELS}, o.cumulative) AS b(le, n) WHERE b.n > 0
    UNION ALL
    SELECT 0, family, family || '_count', type, labels, 'add', n FROM observed
    UNION ALL
    SELECT 0, family, family || '_sum', type, labels, 'add', total FROM observed
), folded AS (
    SELECT family, sample, type, labels, min(op) AS op,
           CASE min(op) WHEN 'add' THEN sum(value) WHEN 'max' THEN max(value)
                ELSE (array_agg(value ORDER BY id DESC))[1] END AS value
    FROM expanded GROUP BY family, sample, type, labels
), up AS (
    INSERT INTO metric_totals AS t (family, sample, type, labels, op, value, updated_at)
    SELECT family, sample, type, labels, op, value, now() FROM folded
    ORDER BY sample, labels
    ON CONFLICT (sample, labels) DO UPDATE SET
        value = CASE EXCLUDED.op WHEN 'add' THEN t.value + EXCLUDED.value
                                 WHEN 'max' THEN greatest(t.value, EXCLUDED.value)
                                 ELSE EXCLUDED.value END,
        updated_at = now()
)
SELECT count(*) FROM moved
"""  # noqa: S608 - constants


@dataclass(frozen=True, slots=True)
class Sample:
    family: str
    sample: str
    type: str
    labels: dict
    value: float


# After a fold the table is empty: past this size it is dead rows, which every later fold's
# DELETE reads again until autovacuum comes by (an import leaves 15 deltas a file: 1.5 M,
# 280 MB, at 100,000 files; each scrape after their fold took 150 ms). The schedule's and
# the pipeline's folds vacuum it then; a scrape never does (that VACUUM takes seconds).
VACUUM_ABOVE_BYTES = 1 << 20


def table_vacuum_if_bloated(table: str, *, above: int = VACUUM_ABOVE_BYTES) -> bool:
    """VACUUM `table` (one of our delta tables, just folded) when it takes more than `above`
    bytes; not inside a transaction (VACUUM cannot), where autovacuum is left to it."""
    if connection.in_atomic_block:
        return False
    with connection.cursor() as cur:
        cur.execute("SELECT pg_relation_size(%s::regclass)", [table])
        if cur.fetchone()[0] <= above:
            return False
        cur.execute(f"VACUUM {connection.ops.quote_name(table)}")
    return True


def metrics_fold() -> int:
    """Fold the pending deltas into the totals, as a scrape does first, and vacuum the table
    when it is bloated; the number of deltas moved. The `metrics-fold` schedule calls it every
    minute and each pipeline step at its end, so a scrape finds little pending even when
    nothing scrapes for a while (a 35-minute import of 100,000 files left 1.5 M, and the first
    scrape after it took 8.6 s folding them)."""
    with transaction.atomic():
        # One folder at a time, so two folds never lock the same totals in another order.
        locks.xact_lock(locks.METRICS)
        with connection.cursor() as cur:
            cur.execute(FOLD_SQL)
            moved = cur.fetchone()[0]
    table_vacuum_if_bloated("metric_deltas")
    return moved


def metric_samples() -> list[Sample]:
    """Fold the pending deltas into the totals and read them all (both tables
    are small: one row per exported series, plus what arrived since the last fold)."""
    with transaction.atomic():
        locks.xact_lock(locks.METRICS)
        with connection.cursor() as cur:
            cur.execute(FOLD_SQL)
            cur.execute("SELECT family, sample, type, labels, value FROM metric_totals ORDER BY family, sample, id")
            rows = cur.fetchall()
    return [
        Sample(family, sample, typ, labels if isinstance(labels, dict) else json.loads(labels), value)
        for family, sample, typ, labels, value in rows
    ]


def metric_families(samples: Iterable[Sample]) -> Iterator[Metric]:
    """prometheus_client families from the stored samples, with the help text
    of the metric's declaration when this process has imported it."""
    grouped: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        grouped[sample.family].append(sample)
    # Declared families are exported before their first event too, so a rule
    # reading one finds it; a counter without labels starts at 0.
    for family, (_, typ) in _HELP.items():
        if family not in grouped and typ == COUNTER and not _LABELLED.get(family):
            grouped[family].append(Sample(family, f"{family}_total", COUNTER, {}, 0.0))
    for family in sorted(set(grouped) | set(_HELP)):
        rows = grouped.get(family, [])
        help_text, typ = _HELP.get(family, (family, rows[0].type if rows else GAUGE))
        metric = Metric(family, help_text, typ)
        for row in rows:
            metric.add_sample(row.sample, {k: str(v) for k, v in row.labels.items()}, row.value)
        yield metric


def stored_value(sample: str, **labels: str) -> float | None:
    """One stored total (after the last fold), or None."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT value FROM metric_totals WHERE sample = %s AND labels = %s::jsonb",
            [sample, json.dumps(labels, sort_keys=True)],
        )
        row = cur.fetchone()
    return row[0] if row else None
