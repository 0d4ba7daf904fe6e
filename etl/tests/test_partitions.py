"""Yearly partitions of the candle tables: made ahead by the schedule, made by a writer for
a year it meets, dropped whole by retention; bytes per candle of a partitioned table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import IntegrityError, connection, transaction
from django_q.models import Schedule

from etl import tasks
from etl.models import MarketData
from etl.selectors import table_bytes_per_row, table_row_estimate
from etl.services import reference_data_bootstrap
from etl.services.partitions import partition_years, partitions_ensure, partitions_maintain

pytestmark = pytest.mark.django_db


def candle(ts: datetime, ticker: str = "AAA") -> MarketData:
    return MarketData.objects.create(
        ticker=ticker, market="NASDAQ", timeframe="1d", ts=ts, open=1, high=2, low=1, close=1.5, volume=10
    )


def test_the_schedule_makes_this_and_next_years_partitions_of_both_tables_idempotently():
    now = datetime(2061, 5, 1, tzinfo=UTC)
    first = partitions_maintain(now=now, ahead_years=1, retention_years=0)
    assert first.created == {"market_data": [2061, 2062], "market_data_v2": [2061, 2062]}
    assert first.dropped == {}
    again = partitions_maintain(now=now, ahead_years=1, retention_years=0)
    assert again.created == {"market_data": [], "market_data_v2": []}
    candle(datetime(2062, 12, 31, 23, 59, tzinfo=UTC))  # the last moment of the partition's year


def test_a_year_without_partition_is_refused_by_postgresql_unless_the_writer_makes_it():
    # What partitions_ensure is for: the ORM (like any INSERT) fails on a year with no partition.
    with pytest.raises(IntegrityError, match="no partition"):
        with connection.cursor() as cur, transaction.atomic():
            cur.execute(
                "INSERT INTO market_data (ticker, market, timeframe, ts, open, high, low, close, volume)"
                " VALUES ('X', 'NASDAQ', '1d', '1961-01-02', 1, 1, 1, 1, 1)"
            )
    assert partitions_ensure(table="market_data", first=datetime(1961, 1, 2), last=datetime(1961, 1, 2)) == [1961]
    assert partitions_ensure(table="market_data", first=datetime(1961, 1, 2), last=datetime(1961, 1, 2)) == []
    assert candle(datetime(1961, 1, 2, tzinfo=UTC)).pk


def test_retention_drops_whole_old_partitions_and_keeps_the_rest(assert_summaries_exact):
    partitions_ensure(table="market_data", first=datetime(1980, 1, 1), last=datetime(1981, 1, 1))
    old, kept = candle(datetime(1980, 3, 3, tzinfo=UTC)), candle(datetime(2024, 3, 3, tzinfo=UTC), "BBB")
    with connection.cursor() as cur:  # the test's one transaction: fire the deferred FK checks now
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    result = partitions_maintain(now=datetime(2026, 6, 1, tzinfo=UTC), ahead_years=0, retention_years=40)
    # 40 full years before 2026: partitions ending by 1986-01-01 go (1980, 1981), 1986 on stays.
    assert {1980, 1981} <= set(result.dropped["market_data"])
    assert not {y for y in partition_years("market_data") if y < 1986}
    assert not MarketData.objects.filter(pk=old.pk).exists()
    assert MarketData.objects.filter(pk=kept.pk).exists()
    # A dropped partition fires no DELETE trigger: the summaries forgot its candles all the same.
    assert_summaries_exact(sources=["candles"])


def test_candles_are_kept_forever_by_default(settings):
    assert settings.CANDLE_RETENTION_YEARS == 0
    partitions_ensure(table="market_data", first=datetime(1970, 1, 1), last=datetime(1970, 1, 1))
    assert tasks.candle_partitions_maintain()["dropped"] == {}
    assert 1970 in partition_years("market_data")


def test_bootstrap_creates_the_partition_schedule():
    reference_data_bootstrap()
    schedule = Schedule.objects.get(name="candle-partitions")
    assert schedule.func == "etl.tasks.candle_partitions_maintain"


def test_bytes_per_candle_sums_every_partition_and_its_indexes():
    for year in (2020, 2021, 2022):
        candle(datetime(year, 1, 2, tzinfo=UTC))
    with connection.cursor() as cur:
        cur.execute("SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('market_data') WHERE isleaf")
        total = cur.fetchone()[0]
    assert table_bytes_per_row("market_data") == pytest.approx(total / 3)
    assert table_bytes_per_row("market_data", rows=6) == pytest.approx(total / 6)
    assert table_row_estimate("market_data") == 3  # small: counted exactly, over every partition
