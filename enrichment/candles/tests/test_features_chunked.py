"""The chunked feature step (`feature_batch`) against the per-series one: the same rows on
random data, a bounded no-op, cancel between chunks, a failing series, candles written once."""

from __future__ import annotations

import importlib
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from django.db import DataError, connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from enrichment.candles.services import feature_batch
from enrichment.candles.services.feature_runs import features_run
from enrichment.candles.tests.feature_fixtures import (
    fail_series_in,
    insert_market_data,
    make_symbol,
    random_candles,
)
from enrichment.models import DataQualityMetric, EnrichmentComputeLog, EnrichmentStatus, FeatureRun, MarketDataV2
from etl.models import DataCorrection, MarketData, Symbol
from etl.progress import Cancelled, ProgressReporter

pytestmark = pytest.mark.django_db

V2_COLUMNS = [
    f.column
    for f in MarketDataV2._meta.concrete_fields
    if f.column not in ("id", "symbol_id", "computed_at", "updated_at", "created_at")
]
METRIC_FIELDS = [
    "timeframe",
    "day",
    "expected_bars",
    "actual_bars",
    "completeness",
    "gaps",
    "volume_anomalies",
    "ohlc_inconsistencies",
    "outside_session",
    "avg_quality_score",
]
STATUS_FIELDS = ["timeframe", "state", "rows", "first_ts", "last_ts", "avg_quality_score", "completeness", "last_error"]
# (market, timeframe, bar seconds, start): crypto around the clock and a stock market with sessions.
SHAPES = [
    ("BINANCE", "15m", 900, 1_700_000_100 - 1_700_000_100 % 900),
    ("BINANCE", "1h", 3600, 1_700_002_800),
    ("NASDAQ", "1d", 86400, 1_700_006_400),
]


def v2_rows(symbol) -> list[tuple]:
    return list(MarketDataV2.objects.filter(symbol=symbol).order_by("timeframe", "ts").values_list(*V2_COLUMNS))


def assert_same_series(a, b) -> None:
    """Two symbols fed the same candles hold the same rows, bit for bit."""
    left, right = v2_rows(a), v2_rows(b)
    assert len(left) == len(right)
    for x, y in zip(left, right, strict=True):  # NULL is None, so == compares floats bit for bit
        assert x == y, [(c, u, v) for c, u, v in zip(V2_COLUMNS, x, y, strict=True) if u != v]
    for model, fields in ((DataQualityMetric, METRIC_FIELDS), (EnrichmentStatus, STATUS_FIELDS)):
        ordered = model.objects.order_by(*fields[:2])
        left = list(ordered.filter(symbol=a).values_list(*fields))
        right = list(ordered.filter(symbol=b).values_list(*fields))
        assert left == right, model.__name__
    logs = EnrichmentComputeLog.objects.order_by("timeframe", "created_at", "id")
    fields = ("timeframe", "mode", "rows_read", "rows_written", "first_ts", "last_ts", "succeeded")
    assert list(logs.filter(symbol=a).values_list(*fields)) == list(logs.filter(symbol=b).values_list(*fields))
    # One statement writes a run's amendments of a series in either path, in no particular order.
    amendments = DataCorrection.objects.filter(kind="candle_amendment")
    fields = ("field", "old_value", "new_value")
    assert sorted(amendments.filter(ticker=a.ticker).values_list(*fields)) == sorted(
        amendments.filter(ticker=b.ticker).values_list(*fields)
    )


def feed(pairs, shape, data, rows: slice) -> None:
    market, timeframe, _, _ = shape
    for symbol in pairs:
        insert_market_data(symbol, data, timeframe=timeframe, rows=rows)


def restate(pairs, timeframe: str, rng: np.random.Generator, count: int) -> None:
    """Restate `count` random stored bars of each symbol the same way (as an import does)."""
    stored = list(MarketData.objects.filter(symbol=pairs[0], timeframe=timeframe).order_by("ts").values_list("ts"))
    for (ts,) in (stored[i] for i in rng.choice(len(stored), size=min(count, len(stored)), replace=False)):
        for symbol in pairs:
            MarketData.objects.filter(symbol=symbol, timeframe=timeframe, ts=ts).update(
                close=F("close") * 1.01, high=F("high") * 1.02, updated_at=timezone.now()
            )


@pytest.mark.parametrize("seed", [1, 2])
def test_the_chunked_path_gives_the_rows_of_the_per_series_path_on_random_data(seed, monkeypatch):
    """Gaps, restatements, several timeframes and markets, series added between runs: a
    per-series run over one set of symbols and a chunked run (chunks of three series) over a
    twin set fed the same candles end with the same rows, metrics, status, logs and amendments."""
    monkeypatch.setattr(feature_batch, "CHUNK_SERIES", 3)
    rng = np.random.default_rng(seed)
    twins, plans = [], []
    for i in range(7):
        shape = SHAPES[i % len(SHAPES)]
        market = shape[0]
        one = make_symbol(f"P{i}", market, "CRYPTO" if market == "BINANCE" else "STOCK_NASDAQ")
        two = make_symbol(f"C{i}", market, "CRYPTO" if market == "BINANCE" else "STOCK_NASDAQ")
        n = int(rng.integers(60, 260))
        data = random_candles(
            n, seed=seed * 100 + i, timeframe_seconds=shape[2], start=shape[3], gaps=int(rng.integers(0, 6))
        )
        twins.append((one, two))
        # The first run sees a prefix (or nothing: a series added later), the second the rest.
        cut = 0 if i == 6 else int(rng.integers(n // 2, n))
        plans.append((shape, data, cut, n))
        feed((one, two), shape, data, slice(0, cut))

    def both_runs():
        per_series = features_run(symbols=[p for p, _ in twins], chunked=False)
        chunked = features_run(symbols=[c for _, c in twins], chunked=True)
        assert per_series.failed == chunked.failed == 0
        for name in ("series", "candles_inserted", "candles_updated", "amendments", "rows_computed"):
            assert getattr(per_series, name) == getattr(chunked, name), name

    both_runs()
    for (one, two), (shape, data, cut, n) in zip(twins, plans, strict=True):
        restate((one, two), shape[1], rng, 2) if cut else None
        feed((one, two), shape, data, slice(cut, n))
    both_runs()
    both_runs()  # nothing new: a no-op for both
    for one, two in twins:
        assert_same_series(one, two)
    assert DataCorrection.objects.filter(kind="candle_amendment").count() > 0


def test_a_chunked_full_recompute_equals_the_per_series_one():
    pairs = []
    for i, shape in enumerate(SHAPES):
        market = shape[0]
        one = make_symbol(f"P{i}", market)
        two = make_symbol(f"C{i}", market)
        data = random_candles(150, seed=40 + i, timeframe_seconds=shape[2], start=shape[3], gaps=3)
        feed((one, two), shape, data, slice(None))
        pairs.append((one, two))
    features_run(symbols=[p for p, _ in pairs], chunked=False)
    features_run(symbols=[c for _, c in pairs], chunked=True)
    features_run(symbols=[p for p, _ in pairs], chunked=False, full=True)
    features_run(symbols=[c for _, c in pairs], chunked=True, full=True)
    for one, two in pairs:
        assert_same_series(one, two)


def make_series(count: int, bars: int = 30, *, first: int = 0) -> list:
    symbols = []
    for i in range(first, first + count):
        symbol = make_symbol(f"S{i:03d}", "BINANCE", "CRYPTO")
        insert_market_data(symbol, random_candles(bars, seed=i))
        symbols.append(symbol)
    return symbols


def test_a_no_op_run_costs_the_same_few_queries_for_10_or_200_series():
    make_series(10)
    features_run(chunked=True)
    with CaptureQueriesContext(connection) as ten:
        result = features_run()
    assert result.series == 10 and result.rows_computed == 0
    make_series(190, first=10)
    features_run(chunked=True)
    with CaptureQueriesContext(connection) as two_hundred:
        result = features_run()
    assert result.series == 200 and result.rows_computed == 0
    # Horizon + mark + count; the scan between its planner settings and their reset (in a
    # savepoint here, inside the test's transaction); the new mark. The scan reads only what was
    # written since the mark.
    assert len(ten.captured_queries) == len(two_hundred.captured_queries) <= 7
    assert any("md.updated_at > " in q["sql"] for q in two_hundred.captured_queries)


def test_cancel_stops_between_chunks(monkeypatch):
    monkeypatch.setattr(feature_batch, "CHUNK_SERIES", 2)
    make_series(6)
    run = FeatureRun.objects.create(kind=FeatureRun.Kind.COMPUTE, params={}, requested_by="test")
    reporter = ProgressReporter(run, label="features")
    FeatureRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    with pytest.raises(Cancelled):
        features_run(run=run, progress=reporter, chunked=True)
    # The first chunk is done and recorded; the others were not started.
    assert EnrichmentStatus.objects.filter(state="ok").count() == 2
    assert MarketDataV2.objects.values("symbol").distinct().count() == 2
    assert FeatureRun.objects.get(pk=run.pk).progress_done == 2


def test_a_failing_series_fails_alone_and_the_rest_of_its_chunk_goes_on(monkeypatch):
    symbols = make_series(5)
    broken = symbols[2]
    fail_series_in(monkeypatch, broken.pk)
    result = features_run(chunked=True)
    assert result.failed == 1 and "boom" in result.errors[0] and result.rows_computed == 4 * 30
    status = EnrichmentStatus.objects.get(symbol=broken)
    assert status.state == "failed" and "boom" in status.last_error
    assert EnrichmentComputeLog.objects.filter(symbol=broken, succeeded=False).exists()
    assert EnrichmentStatus.objects.filter(state="ok").count() == 4
    monkeypatch.undo()
    again = features_run(chunked=True)  # fixed: the failed series is stale and computed now
    assert again.failed == 0 and again.rows_computed == 30
    assert EnrichmentStatus.objects.filter(state="ok").count() == 5


def test_the_chunked_run_keeps_the_integrity_summaries_exact(reference_data, assert_summaries_exact):
    symbols = make_series(6, bars=80)
    features_run(chunked=True)
    assert_summaries_exact()
    insert_market_data(symbols[0], random_candles(120, seed=0), rows=slice(80, None))
    features_run(chunked=True)
    assert_summaries_exact()


@pytest.mark.parametrize(
    ("market", "seconds", "start"),
    [("BINANCE", 900, 1_700_000_100), ("NASDAQ", 900, 1_700_000_100), ("NASDAQ", 86400, 1_700_006_400)],
)
def test_daily_metrics_of_many_series_at_once_equal_each_series_on_its_own(market, seconds, start):
    from enrichment.candles import candle_quality
    from enrichment.candles.tests.feature_fixtures import make_market
    from etl.calendars import market_calendar

    calendar = market_calendar(make_market(market))
    rng = np.random.default_rng(seconds)
    parts, lengths, from_start = [], [], []
    for i in range(6):
        n = int(rng.integers(1, 300))
        steps = rng.integers(1, 4, size=n) * seconds  # gaps of up to two bars
        ts = start + i * 7 * seconds + np.cumsum(steps) - steps[0] + int(rng.integers(0, 3)) * 60 * (seconds < 86400)
        flags = rng.integers(0, 16, size=n)
        score = np.where(rng.random(n) < 0.1, np.nan, 1.0 - 0.25 * rng.integers(0, 5, size=n))
        parts.append((ts, flags, score))
        lengths.append(n)
        from_start.append(bool(i % 2))
    many = candle_quality.daily_metrics_many(
        ts_seconds=np.concatenate([p[0] for p in parts]),
        flags=np.concatenate([p[1] for p in parts]),
        score=np.concatenate([p[2] for p in parts]),
        bounds=np.concatenate([[0], np.cumsum(lengths)]),
        from_day_start=np.array(from_start),
        calendar=calendar,
        timeframe_seconds=seconds,
    )
    for i, (ts, flags, score) in enumerate(parts):
        one = candle_quality.daily_metrics(
            ts_seconds=ts,
            flags=flags,
            score=score,
            calendar=calendar,
            timeframe_seconds=seconds,
            from_day_start=from_start[i],
        )
        mine = many["series"] == i
        days = np.array(one["day"].tolist(), dtype="datetime64[D]").astype(np.int64)
        np.testing.assert_array_equal(many["day"][mine], days)
        for column in candle_quality.DAILY_COLUMNS[1:]:
            np.testing.assert_array_equal(many[column][mine], one[column].to_numpy(np.float64), err_msg=column)


def v2_writes() -> np.ndarray:
    """Rows inserted and updated in market_data_v2's partitions by this transaction so far."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_upd), 0) FROM pg_stat_xact_user_tables"
            " WHERE relid IN (SELECT relid FROM pg_partition_tree('market_data_v2') WHERE isleaf)"
        )
        return np.array(cur.fetchone(), dtype=np.int64)


def test_the_chunked_run_writes_a_new_candle_once_with_its_features():
    symbols = make_series(4, bars=60)
    before = v2_writes()
    result = features_run(chunked=True)
    inserted, updated = v2_writes() - before
    assert result.candles_inserted == inserted == 4 * 60 and updated == 0
    assert not MarketDataV2.objects.filter(features_revision__isnull=True).exists()
    for symbol in symbols:  # one new bar each: inserted with its features, nothing older rewritten
        insert_market_data(symbol, random_candles(61, seed=symbol.pk), rows=slice(60, 61))
    before = v2_writes()
    assert features_run(chunked=True).rows_computed == 4
    assert list(v2_writes() - before) == [4, 0]
    # The per-series path, for contrast, inserts and then updates each candle.
    other = make_symbol("OTHER", "BINANCE", "CRYPTO")
    insert_market_data(other, random_candles(60, seed=99))
    before = v2_writes()
    features_run(symbols=[other], chunked=False)
    assert list(v2_writes() - before) == [60, 60]


def test_a_new_series_written_straight_by_copy_equals_the_per_series_path():
    """The from-scratch path (`feature_scratch`: no staging, one COPY into market_data_v2 and one
    into data_quality_metrics) on candles with every kind of extra field: numbers, text that is
    no number, missing ones, trades to round."""
    pairs = []
    for i in range(4):
        one, two = make_symbol(f"P{i}", "BINANCE", "CRYPTO"), make_symbol(f"C{i}", "BINANCE", "CRYPTO")
        data = random_candles(90, seed=70 + i, gaps=2)
        feed((one, two), SHAPES[0], data, slice(None))
        pairs.append((one, two))
    extras = [
        {"trades": "12.5", "quote_volume": "1e3", "taker_buy_base_volume": "3"},
        {"count": "7", "quote_volume": "n/a"},
        {},
        {"trades": " 13.5 ", "taker_buy_volume": "-0.0"},
    ]
    for one, two in pairs:  # the same extras for both twins, bar by bar
        for symbol in (one, two):
            for j, row in enumerate(MarketData.objects.filter(symbol=symbol).order_by("ts")):
                row.extra = extras[j % len(extras)]
                row.save(update_fields=["extra"])
    features_run(symbols=[p for p, _ in pairs], chunked=False)
    before = v2_writes()
    chunked = features_run(symbols=[c for _, c in pairs], chunked=True)
    assert chunked.candles_inserted == 4 * 90 and list(v2_writes() - before) == [4 * 90, 0]
    for one, two in pairs:
        assert_same_series(one, two)
    assert MarketDataV2.objects.filter(trades=12).exists() and MarketDataV2.objects.filter(trades=14).exists()
    assert MarketDataV2.objects.filter(quote_volume__isnull=True).exists()


def test_a_new_series_written_by_copy_is_stamped_with_the_runs_time():
    """The from-scratch COPY writes `computed_at` and `updated_at` of its candles and
    `computed_at` of its metric days in microseconds since 2000, the transaction's `now()`:
    they read back as that time (pandas' `Timestamp.value` is nanoseconds whatever the unit,
    which wrote year 58901 and made every later read of the row fail)."""
    symbols = [make_symbol(f"S{i}", "BINANCE", "CRYPTO") for i in range(4)]
    for i, symbol in enumerate(symbols):
        feed((symbol,), SHAPES[0], random_candles(40, seed=90 + i, gaps=0), slice(None))
    with connection.cursor() as cur:
        cur.execute("SELECT now()")
        started = cur.fetchone()[0]
    result = features_run(symbols=symbols, chunked=True)
    assert result.candles_inserted == 4 * 40
    rows = MarketDataV2.objects.filter(symbol__in=symbols)
    stamps = {*rows.values_list("computed_at", flat=True), *rows.values_list("updated_at", flat=True)}
    days = set(DataQualityMetric.objects.filter(symbol__in=symbols).values_list("computed_at", flat=True))
    assert days and stamps
    for stamp in stamps | days:
        assert started <= stamp <= started + timedelta(minutes=5)


def test_new_series_starting_in_different_years_are_written_in_one_chunk(caplog):
    """The from-scratch COPY makes the partitions of the earliest and the latest bar of all
    the chunk's new series, not only of the first series read."""
    from etl.services.partitions import partitions_ensure

    later, earlier = make_symbol("LATER", "BINANCE", "CRYPTO"), make_symbol("EARLIER", "BINANCE", "CRYPTO")
    starts = {
        later: 1_700_000_100 - 1_700_000_100 % 900,
        earlier: 170_000_100 - 170_000_100 % 900,
    }  # 1975: no partition yet
    for symbol, start in starts.items():
        data = random_candles(40, seed=symbol.pk, start=start)
        first, last = (pd.Timestamp(data["ts"][i], unit="s", tz="UTC").to_pydatetime() for i in (0, -1))
        partitions_ensure(table="market_data", first=first, last=last)
        insert_market_data(symbol, data)
    with caplog.at_level("WARNING"):
        result = features_run(chunked=True)
    assert "one by one" not in caplog.text
    assert result.failed == 0 and result.candles_inserted == 80
    assert MarketDataV2.objects.filter(symbol=earlier).count() == 40


@pytest.mark.parametrize("seed", [3, 4])
def test_one_new_bar_per_series_batched_equals_the_per_series_path(seed):
    """The hourly case: every series gets its next bar, round after round. The chunked run reads
    the context of the series whose new bars follow every stored one, with nothing stale and no
    funding, by its short query (`_TAILS_FAST_SQL`: also one with fewer stored rows than the
    longest window needs, read from its first row, one whose late bar fills a hole between stored
    ones, and one that gets older history before its first stored bar); a series with a restated
    bar or with funding observations goes the general way. Both end with the rows, metrics,
    status, logs and amendments of the per-series path, bit for bit."""
    rng = np.random.default_rng(seed)
    twins, plans = [], []
    for i in range(11):
        shape = SHAPES[i % len(SHAPES)] if i < 9 else SHAPES[2]  # daily: a context of 52 rows
        market = shape[0]
        asset_class = "CRYPTO" if market == "BINANCE" else "STOCK_NASDAQ"
        one, two = make_symbol(f"P{i}", market, asset_class), make_symbol(f"C{i}", market, asset_class)
        n = int(rng.integers(90 if i < 9 else 160, 200))
        data = random_candles(
            n, seed=seed * 100 + i, timeframe_seconds=shape[2], start=shape[3], gaps=int(rng.integers(0, 6))
        )
        cut = 20 if i == 8 else int(rng.integers(60, n - 5)) if i < 9 else n - 5  # the 9th: short
        # Held back until the third round: a bar in the middle (the 10th), the oldest 15 (the 11th).
        held = {9: [slice(cut - 30, cut - 29)], 10: [slice(0, 15)]}.get(i, [])
        twins.append((one, two))
        plans.append((shape, data, cut, held))
        first = held[0].stop if i == 10 else 0
        for part in [slice(first, cut)] if i != 9 else [slice(0, cut - 30), slice(cut - 29, cut)]:
            feed((one, two), shape, data, part)

    def both_runs() -> list[str]:
        per_series = features_run(symbols=[p for p, _ in twins], chunked=False)
        with CaptureQueriesContext(connection) as queries:
            chunked = features_run(symbols=[c for _, c in twins], chunked=True)
        assert per_series.failed == chunked.failed == 0
        for name in ("series", "candles_inserted", "candles_updated", "amendments", "rows_computed"):
            assert getattr(per_series, name) == getattr(chunked, name), name
        return [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().startswith("INSERT INTO feature_tails")]

    both_runs()
    for step in range(4):
        if step == 1:  # funding observations on stored rows of one pair (a provider source writes them)
            for symbol in twins[1]:
                stamps = list(MarketDataV2.objects.filter(symbol=symbol).order_by("ts").values_list("ts", flat=True))
                MarketDataV2.objects.filter(symbol=symbol, ts__in=stamps[10:40:8]).update(funding_rate=1e-4)
        if step == 2:
            restate(twins[0], plans[0][0][1], rng, 1)
        for (one, two), (shape, data, cut, held) in zip(twins, plans, strict=True):
            feed((one, two), shape, data, slice(cut + step, cut + step + 1))
            for part in held if step == 3 else []:
                feed((one, two), shape, data, part)
        tails = both_runs()
        assert any("WHERE p.fast" in q for q in tails)  # the hourly series' short query
        # The general one from the funding on: for that pair, and for the restated one.
        assert any("WHERE NOT p.fast" in q for q in tails) == (step >= 1)
    for one, two in twins:
        assert_same_series(one, two)
    assert DataCorrection.objects.filter(kind="candle_amendment").exists()


def test_a_chunk_runs_without_jit_and_puts_the_setting_back(monkeypatch):
    """The chunk's statements are costed above `jit_above_cost` and were compiled for nothing
    (25-30 ms apiece): the chunk turns JIT off for itself, and the caller's setting is back after.
    Its work_mem is raised to CHUNK_WORK_MEM (the context read's aggregate spilled to disk under
    4 MB), never lowered, and put back too."""
    make_series(3)
    features_run(chunked=True)
    seen = []
    real = feature_batch._compute

    def compute(cur, keys, *, full):
        cur.execute("SELECT current_setting('jit'), current_setting('work_mem')")
        seen.append(cur.fetchone())
        return real(cur, keys, full=full)

    monkeypatch.setattr(feature_batch, "_compute", compute)
    for round_, work_mem in enumerate(("4MB", "64MB")):
        for symbol in Symbol.objects.filter(ticker__startswith="S"):
            insert_market_data(symbol, random_candles(32, seed=symbol.pk), rows=slice(30 + round_, 31 + round_))
        with connection.cursor() as cur:
            cur.execute(f"SET jit = on; SET work_mem = '{work_mem}'")
            assert features_run(chunked=True).rows_computed == 3
            cur.execute("SELECT current_setting('jit'), current_setting('work_mem')")
            assert cur.fetchone() == ("on", work_mem)
    assert seen == [("off", feature_batch.CHUNK_WORK_MEM), ("off", "64MB")]
    with connection.cursor() as cur:
        cur.execute("RESET jit; RESET work_mem")


def test_a_series_with_a_watermark_and_no_stored_row_is_computed_by_the_staged_path(monkeypatch):
    """Only a series without a watermark is looked for among the new ones (`scratch_series`: the
    hourly run probes none); one that was copied before but has no market_data_v2 row now (its rows
    deleted) goes the staged path, and gets the rows, metrics, status and logs of the per-series
    path, bit for bit."""
    twins = []
    for i, shape in enumerate([*SHAPES, SHAPES[2]]):
        asset_class = "CRYPTO" if shape[0] == "BINANCE" else "STOCK_NASDAQ"
        pair = make_symbol(f"P{i}", shape[0], asset_class), make_symbol(f"C{i}", shape[0], asset_class)
        data = random_candles(120, seed=300 + i, timeframe_seconds=shape[2], start=shape[3], gaps=2)
        feed(pair, shape, data, slice(0, 100))
        twins.append((pair, shape, data))
    features_run(symbols=[p for (p, _), _, _ in twins], chunked=False)
    features_run(symbols=[c for (_, c), _, _ in twins], chunked=True)
    for pair, shape, data in twins:
        MarketDataV2.objects.filter(symbol__in=pair).delete()
        feed(pair, shape, data, slice(100, 103))
    per_series = features_run(symbols=[p for (p, _), _, _ in twins], chunked=False)
    probed = []
    real = feature_batch.scratch_series

    def scratch_series(cur):
        found = real(cur)
        probed.append(found)
        return found

    monkeypatch.setattr(feature_batch, "scratch_series", scratch_series)
    chunked = features_run(symbols=[c for (_, c), _, _ in twins], chunked=True)
    assert probed == [[]] and per_series.failed == chunked.failed == 0
    assert per_series.candles_inserted == chunked.candles_inserted == 4 * 3
    for (one, two), _, _ in twins:
        assert_same_series(one, two)
        assert MarketDataV2.objects.filter(symbol=two).count() == 3


# `feature_compute._refresh_status`'s full recount of one series, for every status row.
RECOUNT_SQL = """
SELECT es.symbol_id, es.timeframe, es.state, es.rows, es.first_ts, es.last_ts, es.last_computed_at,
       es.avg_quality_score, es.completeness,
       CASE WHEN a.pending > 0 THEN 'pending' ELSE 'ok' END, a.n, a.first_ts, a.last_ts, a.computed, a.quality,
       (SELECT sum(LEAST(q.actual_bars, q.expected_bars))::float8 / NULLIF(sum(q.expected_bars), 0)
        FROM data_quality_metrics q WHERE q.symbol_id = es.symbol_id AND q.timeframe = es.timeframe),
       es.complete_bars, es.expected_bars,
       (SELECT sum(LEAST(q.actual_bars, q.expected_bars))
        FROM data_quality_metrics q WHERE q.symbol_id = es.symbol_id AND q.timeframe = es.timeframe),
       (SELECT sum(q.expected_bars)
        FROM data_quality_metrics q WHERE q.symbol_id = es.symbol_id AND q.timeframe = es.timeframe),
       es.quality_n, a.quality_n, es.quality_sum::float8, a.quality_sum::float8
FROM enrichment_status es
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE v.features_revision IS DISTINCT FROM v.revision) AS pending, count(*) AS n,
           min(v.ts) AS first_ts, max(v.ts) AS last_ts, max(v.computed_at) AS computed, avg(v.quality_score) AS quality,
           count(v.quality_score) AS quality_n, sum(v.quality_score::numeric) AS quality_sum
    FROM market_data_v2 v WHERE v.symbol_id = es.symbol_id AND v.timeframe = es.timeframe
) a
ORDER BY es.symbol_id, es.timeframe
"""


def shaped_series(name: str, i: int, *, bars: int, seed: int, gaps: int) -> tuple:
    """Series i of SHAPES' round (crypto 15m, crypto 1h, NASDAQ daily): its symbol, shape and candles."""
    shape = SHAPES[i % len(SHAPES)]
    symbol = make_symbol(name, shape[0], "CRYPTO" if shape[0] == "BINANCE" else "STOCK_NASDAQ")
    return symbol, shape, random_candles(bars, seed=seed, timeframe_seconds=shape[2], start=shape[3], gaps=gaps)


def assert_status_is_a_recount() -> int:
    """Every status row equals a full recount of its series: state, counts, timestamps,
    completeness and its kept sums exactly, the mean quality score and the kept quality sum to
    the last bits of a float sum's order (the from-scratch path sums float8), the count of
    scored rows exactly."""
    with connection.cursor() as cur:
        cur.execute(RECOUNT_SQL)
        rows = cur.fetchall()
    for row in rows:
        kept_n, counted_n, kept_sum, counted_sum = row[-4:]
        assert kept_n == counted_n, row[:2]
        assert kept_sum == pytest.approx(counted_sum, rel=1e-12, nan_ok=True), row[:2]
        row = row[:-4]
        assert row[-4:-2] == row[-2:], row[:2]
        row = row[:-4]
        stored, recounted = row[2:9], row[9:]
        assert stored[:5] == recounted[:5], row[:2]
        assert stored[5] == pytest.approx(recounted[5], rel=1e-12, nan_ok=True), row[:2]
        assert stored[6] == recounted[6], row[:2]
    return len(rows)


@pytest.mark.django_db(transaction=True)  # each run commits: its now() is its own, as last_computed_at
@pytest.mark.parametrize("seed", [5, 6])
def test_status_rows_equal_a_full_recount_after_rounds_of_new_bars_restatements_and_gaps(seed, monkeypatch):
    """The chunked run updates the status of a series that only got bars after its stored ones
    from its stored rows' pass and its new rows (no recount); the others are recounted. Round
    after round of new bars, a bar after a gap, a restated bar, a late bar between stored ones
    and two bars at once, on crypto (with funding) and daily stock series, every status row is
    a recount's, and both ways were taken."""
    monkeypatch.setattr(feature_batch, "CHUNK_SERIES", 4)
    appended, recounted = [], []
    refresh = feature_batch._refresh_status

    def spy(cur, *, probed, inserted, size, known=None):
        done = refresh(cur, probed=probed, inserted=inserted, size=size, known=known)
        appended.append(done)
        recounted.append(size - done)
        return done

    monkeypatch.setattr(feature_batch, "_refresh_status", spy)
    rng = np.random.default_rng(seed)
    series = []
    for i in range(9):
        symbol, shape, data = shaped_series(f"Q{i}", i, bars=120, seed=seed * 10 + i, gaps=3)
        cut = int(rng.integers(60, 80))
        held = cut - 10  # a bar held back: written late, between stored ones
        feed((symbol,), shape, data, slice(0, held))
        feed((symbol,), shape, data, slice(held + 1, cut))
        series.append({"symbol": symbol, "shape": shape, "data": data, "next": cut, "held": held})
    assert features_run(chunked=True).failed == 0
    assert_status_is_a_recount()
    for _ in range(6):
        for s in series:
            action = rng.choice(["next", "gap", "restate", "late", "two", "nothing"], p=[0.5, 0.1, 0.1, 0.1, 0.1, 0.1])
            step = {"next": 1, "gap": 3, "two": 2, "restate": 1}.get(str(action), 0)
            if action == "gap":
                s["next"] += 2  # two bars never arrive
            if action == "restate":  # a stored bar restated inconsistent (its score drops), and the next bar
                stored = MarketData.objects.filter(symbol=s["symbol"]).order_by("ts").values_list("ts", flat=True)
                ts = list(stored)[int(rng.integers(0, s["next"] - 5))]
                MarketData.objects.filter(symbol=s["symbol"], ts=ts).update(
                    high=F("low") * 0.5, updated_at=timezone.now()
                )
            if action == "late" and s["held"] is not None:
                feed((s["symbol"],), s["shape"], s["data"], slice(s["held"], s["held"] + 1))
                s["held"] = None
            if step:
                take = 2 if action == "two" else 1
                feed((s["symbol"],), s["shape"], s["data"], slice(s["next"], s["next"] + take))
                s["next"] += take
        assert features_run(chunked=True).failed == 0
        assert assert_status_is_a_recount() == len(series)
    assert sum(appended) > 0 and sum(recounted) > 0


@pytest.mark.django_db(transaction=True)  # each run commits: its now() is its own, as last_computed_at
def test_new_series_get_their_status_from_what_the_chunk_wrote_equal_to_a_full_recount(monkeypatch):
    """The from-scratch path writes the status rows of its new series from the rows and metric
    days it has just written (`feature_scratch.ScratchStatus`), with no recount statement; they
    equal a full recount (crypto with gaps, daily stock bars with their weekend days). A new
    series that already has metric days (its candles gone, its days kept) is recounted."""
    recounted = []
    refresh = feature_batch._refresh_status

    def spy(cur, *, probed, inserted, size, known=None):
        done = refresh(cur, probed=probed, inserted=inserted, size=size, known=known)
        recounted.append(size - done)
        return done

    monkeypatch.setattr(feature_batch, "_refresh_status", spy)
    symbols = []
    for i in range(6):
        symbol, shape, data = shaped_series(f"N{i}", i, bars=70 + i, seed=200 + i, gaps=3)
        feed((symbol,), shape, data, slice(None))
        symbols.append(symbol)
    assert features_run(chunked=True).failed == 0
    assert recounted and sum(recounted) == 0
    assert assert_status_is_a_recount() == 6
    assert EnrichmentStatus.objects.filter(completeness__isnull=False).count() == 6
    # Candles gone, metric days kept: from scratch again, through the upsert, and recounted.
    MarketDataV2.objects.filter(symbol__in=symbols[:4]).delete()
    EnrichmentStatus.objects.filter(symbol__in=symbols[:4]).delete()
    MarketData.objects.filter(symbol__in=symbols[:4]).update(updated_at=timezone.now())
    recounted.clear()
    assert features_run(chunked=True).failed == 0
    assert sum(recounted) == 4
    assert assert_status_is_a_recount() == 6


@pytest.mark.django_db(transaction=True)
def test_an_appended_series_updates_its_completeness_from_its_kept_sums_and_the_days_rewritten():
    """One new bar per series: the completeness comes from the status row's kept sums plus what
    the upsert of the rewritten days changed (not a sum over every metric day): a sum set off by
    one on purpose stays off by one; a row without kept sums (NULL) is summed over every day."""
    symbols = []
    for i in range(6):
        symbol, shape, data = shaped_series(f"K{i}", i, bars=80, seed=300 + i, gaps=2)
        feed((symbol,), shape, data, slice(0, 79))
        symbols.append((symbol, shape, data))
    assert features_run(chunked=True).failed == 0
    assert_status_is_a_recount()
    off, unknown = symbols[0][0], symbols[1][0]
    EnrichmentStatus.objects.filter(symbol=off).update(complete_bars=F("complete_bars") - 1)
    EnrichmentStatus.objects.filter(symbol=unknown).update(complete_bars=None, expected_bars=None)
    for symbol, shape, data in symbols:
        feed((symbol,), shape, data, slice(79, 80))
    assert features_run(chunked=True).failed == 0
    kept = EnrichmentStatus.objects.get(symbol=off)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT sum(LEAST(actual_bars, expected_bars)), sum(expected_bars) FROM data_quality_metrics"
            " WHERE symbol_id = %s",
            [off.pk],
        )
        complete, expected = cur.fetchone()
    assert (kept.complete_bars, kept.expected_bars) == (complete - 1, expected)
    assert kept.completeness == (complete - 1) / expected
    kept.delete()
    assert assert_status_is_a_recount() == 5  # the others, `unknown` included, equal a recount
    assert EnrichmentStatus.objects.get(symbol=unknown).expected_bars is not None


@pytest.mark.django_db(transaction=True)
def test_the_per_series_path_keeps_the_completeness_sums_the_chunked_run_then_adds_to():
    """The per-series path (as the live poller and backfills run it) writes the completeness sums
    with the ratio; a chunked run of one new bar per series adds to them: every status row, sums
    included, equals a recount after each."""
    symbols = []
    for i in range(6):
        symbol, shape, data = shaped_series(f"R{i}", i, bars=60, seed=400 + i, gaps=2)
        feed((symbol,), shape, data, slice(0, 58))
        symbols.append((symbol, shape, data))
    assert features_run(chunked=False).failed == 0
    assert assert_status_is_a_recount() == 6
    assert EnrichmentStatus.objects.filter(expected_bars__isnull=True).count() == 0
    for stop in (59, 60):
        for symbol, shape, data in symbols:
            feed((symbol,), shape, data, slice(stop - 1, stop))
        assert features_run(chunked=True).failed == 0
        assert assert_status_is_a_recount() == 6


def test_a_chunk_with_a_new_series_that_kept_its_metric_days_and_appended_series_runs_as_one(caplog):
    """A series whose market_data_v2 rows are gone but whose metric days are kept (its rows were
    deleted), in a full run is computed from scratch with a metric upsert, in the same chunk as series that got
    a new bar and have their metric days upserted too: two upserts in one transaction."""
    symbols = []
    for i in range(5):
        symbol = make_symbol(f"K{i:03d}", "BINANCE", "CRYPTO")
        insert_market_data(symbol, random_candles(31, seed=i), rows=slice(0, 30))
        symbols.append(symbol)
    features_run(chunked=True)
    MarketDataV2.objects.filter(symbol=symbols[0]).delete()
    assert DataQualityMetric.objects.filter(symbol=symbols[0]).exists()
    for i, symbol in enumerate(symbols[1:], start=1):
        insert_market_data(symbol, random_candles(31, seed=i), rows=slice(30, 31))
    with caplog.at_level("WARNING"):
        result = features_run(chunked=True, full=True)  # an operator's full recompute
    assert "one by one" not in caplog.text
    assert result.failed == 0 and result.candles_inserted == 30 + 4
    assert MarketDataV2.objects.filter(symbol=symbols[0]).count() == 30
    assert assert_status_is_a_recount() == 5


def kept_spy(monkeypatch) -> list[tuple[str, bool]]:
    """Records, for every series a chunk probed, its ticker and whether its count and quality sums
    came from its status row (`kept`) rather than a pass over its stored rows."""
    seen: list[tuple[str, bool]] = []
    real = feature_batch._tails

    def spy(cur, *, full):
        real(cur, full=full)
        cur.execute("SELECT s.ticker, p.kept FROM feature_probe p JOIN symbols s ON s.id = p.symbol_id")
        seen.extend(cur.fetchall())

    monkeypatch.setattr(feature_batch, "_tails", spy)
    return seen


@pytest.mark.django_db(transaction=True)  # each run commits: its now() is its own, as last_computed_at
def test_the_hourly_run_counts_from_the_status_row_and_recounts_where_it_cannot_be_trusted(monkeypatch):
    """A series that only got bars after its stored ones takes its row count and quality sums from
    its status row, not from a pass over its rows; where that row cannot be trusted the pass counts
    them, and the rows, metrics and status equal the per-series path's bit for bit either way:
    its oldest rows gone without the status row knowing (retention's dropped partition), a stored
    row stale again (a provider's restatement), sums not known (a row from before they were kept),
    a status row not `ok`."""
    seen = kept_spy(monkeypatch)
    twins, plans = [], []
    for i in range(5):
        shape = SHAPES[i % len(SHAPES)]
        asset_class = "CRYPTO" if shape[0] == "BINANCE" else "STOCK_NASDAQ"
        one, two = make_symbol(f"K{i}", shape[0], asset_class), make_symbol(f"T{i}", shape[0], asset_class)
        data = random_candles(120, seed=700 + i, timeframe_seconds=shape[2], start=shape[3], gaps=3)
        feed((one, two), shape, data, slice(0, 80))
        twins.append((one, two))
        plans.append((shape, data))

    def both_runs(step: int) -> dict[str, bool]:
        for (one, two), (shape, data) in zip(twins, plans, strict=True):
            feed((one, two), shape, data, slice(80 + step, 81 + step))
        seen.clear()
        per_series = features_run(symbols=[p for p, _ in twins], chunked=False)
        chunked = features_run(symbols=[c for _, c in twins], chunked=True)
        assert per_series.failed == chunked.failed == 0
        assert per_series.rows_computed == chunked.rows_computed
        for one, two in twins:
            assert_same_series(one, two)
        assert_status_is_a_recount()
        return dict(seen)

    assert both_runs(0) == {}  # new series: the from-scratch path, nothing probed
    assert both_runs(1) == {f"T{i}": True for i in range(5)}
    # Broken behind the status rows' back, the same way for both twins of a series:
    (a1, a2), (b1, b2), (c1, c2), (d1, d2) = twins[:4]
    for symbol in (a1, a2):  # the oldest rows gone
        oldest = MarketDataV2.objects.filter(symbol=symbol).order_by("ts").values_list("ts", flat=True)[:7]
        MarketDataV2.objects.filter(symbol=symbol, ts__in=list(oldest)).delete()
    for symbol in (b1, b2):  # a stored row's features stale again
        middle = MarketDataV2.objects.filter(symbol=symbol).order_by("ts").values_list("ts", flat=True)[40]
        MarketDataV2.objects.filter(symbol=symbol, ts=middle).update(features_revision=None)
    EnrichmentStatus.objects.filter(symbol=c2).update(quality_sum=None, quality_n=None)
    EnrichmentStatus.objects.filter(symbol=d2).update(state=EnrichmentStatus.State.FAILED)
    assert both_runs(2) == {"T0": False, "T1": False, "T2": False, "T3": False, "T4": True}
    # Each counted again, each row is kept again.
    assert both_runs(3) == {f"T{i}": True for i in range(5)}


def test_the_upgrade_fills_the_kept_quality_sums_where_the_status_row_matches_its_rows():
    """Migration 0018 fills the kept quality sums of the status rows written before 0017 from
    their rows; a row whose count is not its series' is left NULL (the next run counts it)."""
    fill = importlib.import_module("enrichment.migrations.0018_fill_status_quality_sums").FILL
    for i in range(3):
        symbol, shape, data = shaped_series(f"U{i}", i, bars=60, seed=900 + i, gaps=2)
        feed((symbol,), shape, data, slice(0, 60))
    assert features_run(chunked=True).failed == 0
    EnrichmentStatus.objects.update(quality_sum=None, quality_n=None)
    EnrichmentStatus.objects.filter(symbol__ticker="U2").update(rows=F("rows") - 1)
    with connection.cursor() as cur:
        cur.execute(fill)
    assert EnrichmentStatus.objects.get(symbol__ticker="U2").quality_n is None
    EnrichmentStatus.objects.filter(symbol__ticker="U2").delete()
    assert assert_status_is_a_recount() == 2


def _metric_reads(queries) -> int:
    return sum("AS flags" in q["sql"] for q in queries.captured_queries)


@pytest.mark.parametrize("shape", [SHAPES[2], SHAPES[0]], ids=["daily", "15m"])
def test_the_metric_days_are_read_back_only_where_the_chunk_does_not_hold_them(shape):
    """`_refresh_metrics` takes a series' metric days from the rows `_compute` wrote where those
    are all of the days' rows (`_in_hand`): a daily bar starts its day, so the hourly run reads
    nothing back; a 15m bar in the middle of a day needs the day's earlier rows, stored ones of
    its context, which it reads. Either way the metrics are the per-series path's, bit for bit."""
    market, timeframe, seconds, start = shape
    asset_class = "CRYPTO" if market == "BINANCE" else "STOCK_NASDAQ"
    one, two = make_symbol("P", market, asset_class), make_symbol("C", market, asset_class)
    n = 130 if seconds < 86400 else 80  # 15m: the new bar at 08:15 of the second day
    data = random_candles(n + 1, seed=5, timeframe_seconds=seconds, start=start)
    feed((one, two), shape, data, slice(0, n))
    features_run(symbols=[one], chunked=False)
    features_run(symbols=[two], chunked=True)
    feed((one, two), shape, data, slice(n, n + 1))
    features_run(symbols=[one], chunked=False)
    with CaptureQueriesContext(connection) as queries:
        assert features_run(symbols=[two], chunked=True).rows_computed == 1
    assert _metric_reads(queries) == (0 if seconds >= 86400 else 1)
    assert_same_series(one, two)


def test_packed_out_returns_each_column_sorted_by_series_and_time_and_refuses_a_null():
    rows = "VALUES (2, '1.5', -3), (1, '-0', 7), (2, 'NaN', 5), (1, 'Infinity', 1)"
    select = (
        "SELECT x.k::int8 AS k, 'epoch'::timestamptz + x.s * interval '1 second' AS ts, x.f::float8 AS f"
        f" FROM ({rows}) x(k, f, s)"
    )
    with connection.cursor() as cur:
        out = feature_batch.packed_out(cur, select, {"k": "i", "ts": "t", "f": "f"})
        assert out["k"].tolist() == [1, 1, 2, 2]
        assert out["ts"].tolist() == [1_000_000, 7_000_000, -3_000_000, 5_000_000]
        assert out["f"][0] == np.inf and np.signbit(out["f"][1]) and out["f"][2] == 1.5 and np.isnan(out["f"][3])
        with pytest.raises(ValueError, match="NULL"):
            feature_batch.packed_out(
                cur, select.replace("x.f::float8", "NULLIF(x.f::float8, 1.5)"), {"k": "i", "ts": "t", "f": "f"}
            )
    # Fetched in binary by a plain psycopg cursor, yet logged and raised as Django's cursor does.
    with CaptureQueriesContext(connection) as queries, connection.cursor() as cur, pytest.raises(DataError):
        feature_batch.packed_out(cur, select.replace("x.f::float8", "x.f::float8 / 0"), {"k": "i", "ts": "t", "f": "f"})
    assert "string_agg" in queries.captured_queries[-1]["sql"]


def test_the_hourly_read_of_series_around_their_lookback_equals_the_per_series_path():
    """The fast series' one descending read (`_TAILS_FAST_SQL`: `lookback + 2` rows back from the
    first new bar, and the stored rows after it) at the edges: fewer stored rows than the context
    needs, exactly the context, the context and the row before it, and more (daily bars: a context
    of 52 rows, so `lookback` + 1 = 53). Each gets one new bar; the rows, metrics and status are
    the per-series path's, bit for bit."""
    shape = SHAPES[2]
    twins = []
    for n in (1, 51, 52, 53, 54, 55, 70):
        one, two = make_symbol(f"P{n}", "NASDAQ", "STOCK_NASDAQ"), make_symbol(f"C{n}", "NASDAQ", "STOCK_NASDAQ")
        data = random_candles(n + 1, seed=n, timeframe_seconds=shape[2], start=shape[3])
        feed((one, two), shape, data, slice(0, n))
        twins.append((one, two, data, n))
    for step in range(2):
        for one, two, data, n in twins if step else []:
            feed((one, two), shape, data, slice(n, n + 1))
        features_run(symbols=[t[0] for t in twins], chunked=False)
        with CaptureQueriesContext(connection) as queries:
            features_run(symbols=[t[1] for t in twins], chunked=True)
    assert any("WHERE p.fast" in q["sql"] for q in queries.captured_queries)
    for one, two, _, _ in twins:
        assert_same_series(one, two)
