"""market_data_v2 upserts: new bars inserted, unchanged untouched, changed -> revision + 1 and one amendment."""

from __future__ import annotations

import json
import struct

import numpy as np
import pandas as pd
import pytest
from django.db import connection

from enrichment.candles.feature_list import FEATURE_COLUMNS, FEATURES, STATE_COLUMNS
from enrichment.candles.models import CANDLE_COLUMNS
from enrichment.candles.services import candle_upsert
from enrichment.candles.services.candle_upsert import AMENDMENT_KIND, binary_copy_payload, candles_upsert
from enrichment.candles.tests.feature_fixtures import candle_frame, make_symbol, random_candles
from enrichment.models import MarketDataV2
from etl.models import DataCorrection

pytestmark = pytest.mark.django_db


@pytest.fixture
def btc():
    return make_symbol("BTC", "BINANCE", "CRYPTO")


def xmins(symbol):
    with connection.cursor() as cur:
        cur.execute("SELECT ts, xmin::text FROM market_data_v2 WHERE symbol_id = %s ORDER BY ts", [symbol.pk])
        return dict(cur.fetchall())


def test_first_upsert_inserts_every_bar_with_its_values(btc):
    data = random_candles(500, seed=1)
    result = candles_upsert(symbol=btc, timeframe="15m", frame=candle_frame(data), source="market_data")
    assert (result.received, result.inserted, result.updated, result.unchanged, result.amendments) == (
        500,
        500,
        0,
        0,
        0,
    )
    rows = list(
        MarketDataV2.objects.filter(symbol=btc)
        .order_by("ts")
        .values_list("close", "taker_buy_volume", "funding_rate", "revision")
    )
    assert [r[0] for r in rows] == data["close"].tolist()  # float64 round trip is exact
    assert rows[1][1] == data["taker_buy_volume"][1]
    assert rows[1][2] is None if np.isnan(data["funding_rate"][1]) else rows[1][2] == data["funding_rate"][1]
    assert {r[3] for r in rows} == {1}


def test_unchanged_rerun_writes_nothing(btc):
    frame = candle_frame(random_candles(300, seed=2))
    candles_upsert(symbol=btc, timeframe="15m", frame=frame, source="market_data")
    before = xmins(btc)
    corrections = DataCorrection.objects.count()
    again = candles_upsert(symbol=btc, timeframe="15m", frame=frame, source="market_data")
    assert (again.inserted, again.updated, again.unchanged, again.amendments) == (0, 0, 300, 0)
    assert xmins(btc) == before  # not one new row version
    assert DataCorrection.objects.count() == corrections


def test_restated_candle_gets_revision_2_and_one_amendment_with_old_and_new(btc):
    frame = candle_frame(random_candles(100, seed=3))
    candles_upsert(symbol=btc, timeframe="15m", frame=frame, source="market_data")
    before = xmins(btc)
    restated = frame.copy()
    old_close = float(restated.loc[40, "close"])
    restated.loc[40, "close"] = old_close + 1.5
    result = candles_upsert(symbol=btc, timeframe="15m", frame=restated, source="BINANCE", run_ref="test:1")
    assert (result.updated, result.unchanged, result.amendments) == (1, 99, 1)
    row = MarketDataV2.objects.get(symbol=btc, ts=frame.loc[40, "ts"])
    assert row.revision == 2 and row.close == old_close + 1.5 and row.source == "BINANCE"
    assert row.features_revision is None
    changed = {ts for ts, x in xmins(btc).items() if before[ts] != x}
    assert changed == {row.ts}
    amendment = DataCorrection.objects.get(kind=AMENDMENT_KIND)
    assert amendment.ticker == "BTC" and amendment.market == "BINANCE" and amendment.field == "close"
    assert amendment.run_ref == "test:1" and amendment.table_name == "market_data_v2"
    assert json.loads(amendment.old_value) == {"close": old_close}
    assert json.loads(amendment.new_value) == {"close": old_close + 1.5}
    assert amendment.detail["revision_from"] == 1 and amendment.detail["revision_to"] == 2
    # The same restatement again changes nothing more.
    assert candles_upsert(symbol=btc, timeframe="15m", frame=restated, source="BINANCE").updated == 0
    assert DataCorrection.objects.filter(kind=AMENDMENT_KIND).count() == 1


def test_a_source_without_supplementary_columns_keeps_what_another_gave(btc):
    frame = candle_frame(random_candles(50, seed=4))
    candles_upsert(symbol=btc, timeframe="15m", frame=frame, source="BINANCE")
    plain = frame[["ts", "open", "high", "low", "close", "volume"]]
    result = candles_upsert(symbol=btc, timeframe="15m", frame=plain, source="market_data")
    assert result.updated == 0 and result.amendments == 0
    assert MarketDataV2.objects.filter(symbol=btc, open_interest__isnull=True).count() == 0


def test_duplicate_bars_in_one_batch_are_one_row(btc):
    frame = candle_frame(random_candles(10, seed=5))
    doubled = pd.concat([frame, frame.iloc[[3]].assign(close=1.0)])
    result = candles_upsert(symbol=btc, timeframe="15m", frame=doubled, source="market_data")
    assert result.inserted == 10 and MarketDataV2.objects.get(symbol=btc, ts=frame.loc[3, "ts"]).close == 1.0


def test_binary_copy_payload_round_trips_through_postgres():
    ts = pd.to_datetime([0, 1_700_000_000], unit="s", utc=True)
    payload = binary_copy_payload(pd.Series(ts), [np.array([1.5, np.nan]), np.array([-0.0, 1e300])])
    with connection.cursor() as cur:
        cur.execute("CREATE TEMP TABLE t_copy (ts timestamptz, a float8, b float8)")
        with cur.copy("COPY t_copy FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(payload)
        cur.execute("SELECT extract(epoch FROM ts)::bigint, a, b FROM t_copy ORDER BY ts")
        assert cur.fetchall() == [(0, 1.5, -0.0), (1_700_000_000, None, 1e300)]


def binary_rows_one_by_one(fields) -> bytes:
    """The rows of a binary COPY, one row and one field at a time (what `binary_rows` builds
    with numpy and one compiled pass)."""
    out = bytearray()
    for i in range(len(fields[0][1])):
        out += struct.pack(">h", len(fields))
        for kind, values, null in fields:
            if null is not None and null[i]:
                out += struct.pack(">i", -1)
            elif kind == "text":
                out += struct.pack(">i", len(values[i])) + values[i]
            else:
                code = {"int4": ">i", "int8": ">q", "float8": ">d"}[kind]
                out += struct.pack(">i", struct.calcsize(code)) + struct.pack(code, values[i])
    return bytes(out)


@pytest.mark.parametrize("slice_rows", [7, 1 << 16])
def test_binary_rows_equal_the_rows_built_one_by_one(slice_rows, monkeypatch):
    """NULLs anywhere (all, none, some), texts of every length, each kind, several slices."""
    monkeypatch.setattr(candle_upsert, "_SLICE_ROWS", slice_rows)
    rng = np.random.default_rng(3)
    n = 50
    words = np.array([b"", b"a", b"market_data", b"1d", b"15m"])
    fields = [
        ("int4", rng.integers(-(2**31), 2**31, n).astype(np.int32), None),
        ("text", words[rng.integers(0, len(words), n)], None),
        ("float8", rng.normal(size=n), rng.random(n) < 0.3),
        ("float8", rng.normal(size=n), np.ones(n, dtype=bool)),
        ("int8", rng.integers(-(2**62), 2**62, n), np.zeros(n, dtype=bool)),
        ("float8", rng.normal(size=n), None),
        ("int4", rng.integers(0, 9, n).astype(np.int32), rng.random(n) < 0.5),
    ]
    assert candle_upsert.binary_rows(fields) == binary_rows_one_by_one(fields)
    fixed = [f for f in fields if f[0] != "text" and (f[2] is None or not f[2].any())]
    assert candle_upsert.binary_rows(fixed) == binary_rows_one_by_one(fixed)


def test_market_data_v2_has_a_column_for_every_feature_and_state_and_no_other_float():
    assert FEATURE_COLUMNS == (*FEATURES, *STATE_COLUMNS)
    floats = [
        f.name
        for f in MarketDataV2._meta.concrete_fields
        if f.get_internal_type() == "FloatField" and f.name not in CANDLE_COLUMNS and f.name != "quality_score"
    ]
    assert tuple(floats) == FEATURE_COLUMNS
