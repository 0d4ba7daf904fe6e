"""Metrics you can alert on: counters counted as events, that only grow
whatever happens to the rows; gauges for states; all at /metrics."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from etl import events
from etl.events import DbCounter, DbGauge, DbHistogram
from etl.market_lag import expected_close_missed
from etl.models import Market, MarketData, MetricDelta

pytestmark = pytest.mark.django_db
started = DbCounter("test_operations_started", "Operations started (a test's own)", ["operation"])
duration = DbHistogram("test_operation_seconds", "Operation duration (a test's own)", ["operation"], buckets=(0.5, 1))
score = DbGauge("test_quality_score", "Quality (a test's own)")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def scrape(client) -> dict[str, dict[tuple[str, str], float]]:
    """{type: {(sample, labels): value}} of one /metrics answer."""
    body = client.get("/metrics").content.decode()
    types: dict[str, str] = {}
    samples: dict[str, dict[tuple[str, str], float]] = {}
    for line in body.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split()
            types[name] = typ
        elif line and not line.startswith("#"):
            name, labels, value = SAMPLE.match(line).groups()
            family = next(f for f in (name, re.sub(r"_(total|bucket|count|sum|created)$", "", name)) if f in types)
            samples.setdefault(types[family], {})[(name, labels or "")] = float(value)
    return samples


def test_counted_in_one_process_folded_once_and_kept(client):
    started.labels("analyze").inc()
    started.labels(operation="analyze").inc(2)
    duration.labels("analyze").observe(0.7)
    for _ in range(2):  # a second scrape folds nothing twice
        body = client.get("/metrics").content.decode()
        assert "# HELP test_operations_started_total Operations started (a test's own)" in body
        assert 'test_operations_started_total{operation="analyze"} 3.0' in body
        assert 'test_operation_seconds_bucket{le="1.0",operation="analyze"} 1.0' in body
        assert 'test_operation_seconds_bucket{le="0.5",operation="analyze"}' not in body
        assert 'test_operation_seconds_sum{operation="analyze"} 0.7' in body
    assert not MetricDelta.objects.exists()
    assert events.stored_value("test_operations_started_total", operation="analyze") == 3.0


def test_a_gauge_exports_the_last_value_set_anywhere(client):
    score.set(80)
    score.set(91.5)
    assert "test_quality_score 91.5" in client.get("/metrics").content.decode()


def test_counters_refuse_to_go_down():
    with pytest.raises(ValueError):
        started.labels("execute").inc(-1)
    with pytest.raises(ValueError):
        events.event_count("mytrader_things", -1)


def test_event_count_is_one_line_for_a_service(client):
    events.event_count("mytrader_files_failed", market="NYSE")
    assert 'mytrader_files_failed_total{market="NYSE"} 1.0' in client.get("/metrics").content.decode()


def test_market_data_lag_reads_the_newest_close_kept_by_the_insert_trigger(client, reference_data):
    ts = timezone.now().replace(microsecond=0) - timedelta(hours=3)
    bar = dict(open=1, high=1, low=1, close=1, volume=1)
    MarketData.objects.create(ticker="BTCUSDT", market="BINANCE", timeframe="1h", ts=ts - timedelta(hours=1), **bar)
    MarketData.objects.create(ticker="ETHUSDT", market="BINANCE", timeframe="1h", ts=ts, **bar)
    gauges = scrape(client)["gauge"]
    lag = gauges[("mytrader_market_data_lag_seconds", '{market="BINANCE"}')]
    assert 2 * 3600 - 60 < lag < 2 * 3600 + 60  # the newest bar closed an hour after it opened
    assert ("mytrader_market_data_lag_seconds", '{market="NYSE"}') not in gauges  # no candle, no series


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("newest_close", "now", "missed"),
    [
        # NYSE closes 16:00 New York (20:00 UTC in June). Friday's bar is in, Monday before the close:
        ("2026-06-12T20:00", "2026-06-15T19:00", None),
        ("2026-06-12T20:00", "2026-06-15T20:30", "2026-06-15T20:00"),
        # Thursday's bar is the newest, Monday: the first missing close is Friday's.
        ("2026-06-11T20:00", "2026-06-15T20:30", "2026-06-12T20:00"),
        # A daily bar stamped at midnight UTC closes the next midnight, after the session.
        ("2026-06-13T00:00", "2026-06-15T19:00", None),
    ],
)
def test_a_session_market_lags_from_the_first_close_without_a_bar(reference_data, newest_close, now, missed):
    nyse = Market.objects.prefetch_related("sessions").get(code="NYSE")
    got = expected_close_missed(market=nyse, newest_close=at(newest_close), now=at(now))
    assert got == (at(missed) if missed else None)


def test_a_market_open_all_week_lags_from_its_newest_close(reference_data):
    binance = Market.objects.prefetch_related("sessions").get(code="BINANCE")
    close = at("2026-06-13T10:00")
    assert expected_close_missed(market=binance, newest_close=close, now=close + timedelta(minutes=5)) == close
    assert expected_close_missed(market=binance, newest_close=close, now=close) is None


def test_every_run_table_has_its_triggers():
    from django.apps import apps

    from etl.models import RunRecord

    expected = {m._meta.db_table for m in apps.get_models() if issubclass(m, RunRecord)}
    assert "pipeline_runs" in expected
    for name, event in (("metric_run_finished", "UPDATE"), ("metric_run_finished_ins", "INSERT")):
        with connection.cursor() as cur:
            cur.execute(
                "SELECT event_object_table FROM information_schema.triggers"
                " WHERE trigger_name = %s AND event_manipulation = %s AND action_orientation = 'STATEMENT'",
                [name, event],
            )
            assert expected <= {row[0] for row in cur.fetchall()}


def test_one_statement_finishing_many_runs_counts_each_run_once(client):
    """The run triggers work per statement: an UPDATE that finishes runs counts each run whose
    status changed to a final one (a counter delta per status, an observation per run), and
    counts nothing for runs it leaves open or whose status it does not change."""
    from etl.models import PipelineRun

    now = timezone.now()
    PipelineRun.objects.bulk_create(
        [PipelineRun(status="running", started_at=now - timedelta(seconds=3)) for _ in range(5)]
        + [PipelineRun(status="queued") for _ in range(2)]
        + [PipelineRun(status="failed", started_at=now - timedelta(seconds=1), finished_at=now)]
    )
    running = PipelineRun.objects.filter(status="running").order_by("id")
    ids = list(running.values_list("id", flat=True))
    PipelineRun.objects.filter(id__in=ids[:3]).update(status="succeeded", finished_at=now)
    PipelineRun.objects.filter(id__in=ids[3:]).update(status="failed", finished_at=now)
    PipelineRun.objects.filter(status="queued").update(status="running")  # still open: not counted
    PipelineRun.objects.filter(status="succeeded").update(status="succeeded")  # no change: not counted
    assert MetricDelta.objects.filter(family="mytrader_run_duration_seconds").count() == 6
    samples = scrape(client)
    counters = samples["counter"]
    assert counters[("mytrader_runs_total", '{kind="pipelinerun",status="succeeded"}')] == 3.0
    assert counters[("mytrader_runs_total", '{kind="pipelinerun",status="failed"}')] == 3.0
    histogram = samples["histogram"]
    assert histogram[("mytrader_run_duration_seconds_count", '{kind="pipelinerun"}')] == 6.0
    assert histogram[("mytrader_run_duration_seconds_sum", '{kind="pipelinerun"}')] == pytest.approx(5 * 3.0 + 1.0)


def _finished_runs(n: int) -> None:
    """`n` pipeline runs that finished: the run trigger appends a counter delta for their status
    and one duration observation for each."""
    from etl.models import PipelineRun

    now = timezone.now()
    PipelineRun.objects.bulk_create(
        PipelineRun(status="succeeded", started_at=now - timedelta(seconds=2), finished_at=now) for _ in range(n)
    )


def test_the_metrics_fold_schedule_leaves_a_scrape_nothing_to_fold(reference_data, client):
    """Nothing scraped during a long import: its deltas (about 15 a file) wait for the first scrape,
    which took 8.6 s at 100,000 files. The `metrics-fold` schedule folds them every minute."""
    from django.utils.module_loading import import_string
    from django_q.models import Schedule

    _finished_runs(300)
    assert MetricDelta.objects.count() >= 300
    schedule = Schedule.objects.get(name="metrics-fold")
    assert schedule.schedule_type == Schedule.CRON and schedule.cron == "* * * * *"
    assert import_string(schedule.func)() >= 300
    assert not MetricDelta.objects.exists()
    with connection.cursor() as cur:
        cur.execute(events.FOLD_SQL)
        assert cur.fetchone()[0] == 0  # what the next scrape folds
    counters = scrape(client)["counter"]
    assert counters[("mytrader_runs_total", '{kind="pipelinerun",status="succeeded"}')] == 300.0


@pytest.mark.django_db(transaction=True)
def test_the_scheduled_fold_vacuums_the_deltas_so_later_scrapes_read_no_dead_rows(client):
    """After folding 1.5 M deltas every scrape's DELETE read their 280 MB of dead rows (150 ms)
    until autovacuum came by; the schedule's fold vacuums the table when it is bloated. A
    scrape folds but never vacuums (that takes seconds)."""
    n = 20_000

    def insert() -> int:
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO metric_deltas (family, sample, type, labels, op, value)"
                " SELECT 'test_things', 'test_things_total', 'counter', '{}'::jsonb, 'add', 1"
                " FROM generate_series(1, %s)",
                [n],
            )
            cur.execute("SELECT pg_relation_size('metric_deltas')")
            return cur.fetchone()[0]

    assert insert() > events.VACUUM_ABOVE_BYTES
    client.get("/metrics", REMOTE_ADDR="127.0.0.1")  # a scrape folds them
    with connection.cursor() as cur:
        cur.execute("SELECT pg_relation_size('metric_deltas')")
        assert cur.fetchone()[0] > events.VACUUM_ABOVE_BYTES  # the dead rows are still there
    insert()
    assert events.metrics_fold() == n
    with connection.cursor() as cur:
        cur.execute("SELECT pg_relation_size('metric_deltas')")
        assert cur.fetchone()[0] == 0  # the dead rows are gone and the empty pages with them
    assert events.stored_value("test_things_total") == 2 * n


def test_finished_runs_are_one_counter_delta_and_an_observation_each_folded_into_the_histogram(client):
    """Twelve deltas a finished run (its buckets one by one, count, sum, the status counter):
    15 a file with the import's counters, 1.5 M for 100,000 files. Now the duration is one
    `obs` delta that the fold turns into the same buckets, count and sum, and the runs one
    statement finishes share one counter delta per status."""
    from etl.models import PipelineRun

    now = timezone.now()
    PipelineRun.objects.bulk_create(
        PipelineRun(status="succeeded", started_at=now - timedelta(seconds=seconds), finished_at=now)
        for seconds in (0.5, 2, 100)
    )
    assert MetricDelta.objects.count() == 1 + 3
    samples = scrape(client)["histogram"]
    kind = 'kind="pipelinerun"'
    buckets = {
        le: samples.get(("mytrader_run_duration_seconds_bucket", f'{{{kind},le="{le}"}}'))
        for le in ("1.0", "5.0", "15.0", "60.0", "300.0", "+Inf")
    }
    assert buckets == {"1.0": 1.0, "5.0": 2.0, "15.0": 2.0, "60.0": 2.0, "300.0": 3.0, "+Inf": 3.0}
    assert samples[("mytrader_run_duration_seconds_count", f"{{{kind}}}")] == 3.0
    assert samples[("mytrader_run_duration_seconds_sum", f"{{{kind}}}")] == 102.5
    assert not MetricDelta.objects.exists()


def test_a_runs_duration_delta_is_a_valid_metric_delta():
    """The `obs` delta the run tables' trigger writes is one of the model's ops (the admin and
    full_clean refused it)."""
    from etl.models import PipelineRun

    now = timezone.now()
    PipelineRun.objects.create(status="succeeded", started_at=now - timedelta(seconds=3), finished_at=now)
    observed = MetricDelta.objects.get(op=MetricDelta.Op.OBS)
    observed.full_clean()
    assert observed.value == 3.0
