"""Triggers that count events as the rows change (see etl.events).

A trigger sees every change, whichever code path made it (a service, an
admin `update()`, a retry), and its delta commits or rolls back with the
change itself. Installed after every `migrate` (CREATE OR REPLACE: running it
twice changes nothing), for
- every run table (`etl.models.RunRecord` subclasses): a run reaching a final
  status is `mytrader_runs_total{kind,status}` and, with both timings,
  one observation of `mytrader_run_duration_seconds{kind}` (statement
  triggers: one INSERT of deltas per statement, however many runs it ends);
- `market_data`: the newest candle close per market, a summary row the lag
  gauge reads instead of scanning the table;
- every run table again: its runs per kind and hour in the integrity summaries
  (`runs.created`, `runs.failed`: the dashboard's last 24 h, `etl.summaries`);
- whatever `EventTrigger`s the apps register (`register_event_trigger`).
"""

# The SQL here is built from our own constants and models' table names, never from input.
# ruff: noqa: S608

from __future__ import annotations

import re
from dataclasses import dataclass

from django.apps import apps
from django.db import connection, transaction

from etl.events import OPEN_RUN_STATUSES, run_kind
from etl.locks import TRIGGERS_INSTALL, xact_lock
from etl.models import RunRecord
from etl.summaries import (
    RUNS_WINDOW_HOURS,
    runs_summary_sql,
    runs_summary_triggers_drop,
    runs_summary_triggers_install,
    window_start,
)


@dataclass(frozen=True, slots=True)
class EventTrigger:
    """Append one delta of `family` when a row of `table` satisfies `when`
    (PL/pgSQL over NEW, OLD and TG_OP; OLD is NULL on INSERT).

    `labels` maps each label to an SQL expression over NEW. The SQL comes from
    our own code, never from input."""

    table: str
    family: str
    when: str
    labels: tuple[tuple[str, str], ...] = ()
    value: str = "1"
    events: str = "INSERT OR UPDATE"


_REGISTERED: dict[str, EventTrigger] = {}


def register_event_trigger(trigger: EventTrigger) -> None:
    """Apps call it from ready(); the trigger is (re)installed after migrate."""
    _REGISTERED[f"{trigger.table}:{trigger.family}"] = trigger


def _slug(*parts: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", "_".join(parts).lower())[:50]


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


_DELTA = "INSERT INTO metric_deltas (family, sample, type, labels, op, value)"

# Statement level, over the transition tables: one INSERT … SELECT per statement, however many
# runs it finishes. As a row trigger it made two single-row INSERTs for each finished run (an
# import group's outcome UPDATE finishes 500 file runs: 25 µs each, more than the UPDATE itself)
# and a PL/pgSQL call for each claimed file. A counter delta per status carries its number of
# runs; the durations stay one observation per run (the fold makes the buckets). PostgreSQL takes
# transition tables only on a trigger of one event without a column list: one trigger for INSERT,
# one for UPDATE, which compares each row's old and new status by id.
_RUNS_DONE = f"""
WITH done AS (SELECT n.status, n.started_at, n.finished_at FROM {{source}}
              AND n.status NOT IN ({", ".join(_literal(s) for s in OPEN_RUN_STATUSES)}))
{_DELTA}
SELECT 'mytrader_runs', 'mytrader_runs_total', 'counter', jsonb_build_object('kind', kind, 'status', status), 'add',
       count(*)
FROM done GROUP BY status
UNION ALL
SELECT 'mytrader_run_duration_seconds', 'mytrader_run_duration_seconds', 'histogram', jsonb_build_object('kind', kind),
       'obs', greatest(0, extract(epoch FROM finished_at - started_at))
FROM done WHERE started_at IS NOT NULL AND finished_at IS NOT NULL;
"""
RUN_FUNCTION = f"""
CREATE OR REPLACE FUNCTION metric_run_finished() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind text := TG_ARGV[0];
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_RUNS_DONE.format(source="new_rows n WHERE TRUE")}
    ELSE
        {_RUNS_DONE.format(source="new_rows n JOIN old_rows o ON o.id = n.id WHERE o.status IS DISTINCT FROM n.status")}
    END IF;
    RETURN NULL;
END $$;
"""
# (name, timing, transition tables) of the run tables' two triggers
RUN_TRIGGERS = (
    ("metric_run_finished", "AFTER UPDATE", "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    ("metric_run_finished_ins", "AFTER INSERT", "REFERENCING NEW TABLE AS new_rows"),
)

# A bar's length from its timeframe label (1m, 15m, 1h, 4h, 1d, 1w); 0 when unknown.
_BAR_SECONDS = (
    "CASE WHEN timeframe ~ '^[0-9]{1,4}[mhdwHDW]$' THEN left(timeframe, -1)::int"
    " * CASE lower(right(timeframe, 1)) WHEN 'm' THEN 60 WHEN 'h' THEN 3600 WHEN 'd' THEN 86400 ELSE 604800 END"
    " ELSE 0 END"
)
NEWEST_FAMILY = "mytrader_market_data_newest_close_timestamp_seconds"
_NEWEST_SELECT = (
    f"SELECT '{NEWEST_FAMILY}', '{NEWEST_FAMILY}', 'gauge', jsonb_build_object('market', market), 'max',"
    f" max(extract(epoch FROM ts) + {_BAR_SECONDS})"
)
MARKET_DATA_FUNCTION = f"""
CREATE OR REPLACE FUNCTION metric_market_data_newest() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Statement level over the inserted rows: one small aggregate per COPY or INSERT, not per row.
    {_DELTA} {_NEWEST_SELECT} FROM new_rows GROUP BY market;
    RETURN NULL;
END $$;
"""


def _run_tables() -> list[tuple[str, str]]:
    return sorted(
        (model._meta.db_table, run_kind(model))
        for model in apps.get_models()
        if issubclass(model, RunRecord) and not model._meta.proxy
    )


def _event_function(trigger: EventTrigger, name: str) -> str:
    keys = ", ".join(f"{_literal(label)}, {expr}" for label, expr in trigger.labels)
    family = _literal(trigger.family)
    sample = _literal(f"{trigger.family}_total")
    return f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF {trigger.when} THEN
        {_DELTA} VALUES ({family}, {sample}, 'counter', jsonb_build_object({keys}), 'add', {trigger.value});
    END IF;
    RETURN NULL;
END $$;
"""


def _create_trigger(cur, name: str, table: str, timing: str, function: str) -> None:
    quoted = connection.ops.quote_name(table)
    cur.execute(f"DROP TRIGGER IF EXISTS {name} ON {quoted}")
    cur.execute(f"CREATE TRIGGER {name} {timing} ON {quoted} {function}")


def event_triggers_install(**_signal_kwargs) -> None:
    """(Re)create every metric trigger; connected to post_migrate."""
    existing = set(connection.introspection.table_names())
    with connection.cursor() as cur:
        cur.execute(RUN_FUNCTION)
        for table, kind in _run_tables():
            if table in existing:
                for name, timing, transition in RUN_TRIGGERS:
                    _create_trigger(
                        cur,
                        name,
                        table,
                        timing,
                        f"{transition} FOR EACH STATEMENT EXECUTE FUNCTION metric_run_finished({_literal(kind)})",
                    )
        run_tables = [(table, kind) for table, kind in _run_tables() if table in existing]
        if "integrity_summary_deltas" in existing:
            # The dashboard's runs of the last 24 h per kind (etl.summaries); a run table that had
            # no trigger yet has its runs of the window counted once, here (its inserts wait for
            # this transaction: CREATE TRIGGER locks the table).
            with transaction.atomic():
                xact_lock(TRIGGERS_INSTALL)  # which tables had the triggers is read under it
                new = runs_summary_triggers_install(cur, run_tables)
                if new:
                    fill = runs_summary_sql([(t, k) for t, k in run_tables if t in new])
                    cur.execute(
                        f"INSERT INTO integrity_summary_deltas (market, metric, bucket, value) {fill}",
                        {"since": window_start(RUNS_WINDOW_HOURS)},
                    )
        else:  # migrated back before the summaries: their triggers would write to a table that is gone
            runs_summary_triggers_drop(cur, run_tables)
        if "market_data" in existing:
            cur.execute(MARKET_DATA_FUNCTION)
            _create_trigger(
                cur,
                "metric_market_data_newest",
                "market_data",
                "AFTER INSERT",
                "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION metric_market_data_newest()",
            )
            # Once, for candles stored before the trigger existed (a scan, but only at install).
            cur.execute(
                f"{_DELTA} {_NEWEST_SELECT} FROM market_data"
                f" WHERE NOT EXISTS (SELECT 1 FROM metric_totals WHERE family = '{NEWEST_FAMILY}')"
                f" AND NOT EXISTS (SELECT 1 FROM metric_deltas WHERE family = '{NEWEST_FAMILY}') GROUP BY market"
            )
        for trigger in _REGISTERED.values():
            if trigger.table not in existing:
                continue
            name = _slug("metric_event", trigger.table, trigger.family)
            cur.execute(_event_function(trigger, name))
            _create_trigger(
                cur, name, trigger.table, f"AFTER {trigger.events}", f"FOR EACH ROW EXECUTE FUNCTION {name}()"
            )
