"""What the chunked feature step reads once a run rather than once a chunk: the symbols' markets
(`SeriesContext.symbols_load`); and the compute log's indexes (migration enrichment/0019)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from enrichment.candles.services import feature_batch
from enrichment.candles.services.feature_batch import SeriesContext
from enrichment.candles.services.feature_runs import features_run
from enrichment.candles.services.feature_scan import ScannedSeries
from enrichment.candles.tests.feature_fixtures import insert_market_data, make_symbol, random_candles
from enrichment.models import EnrichmentComputeLog, EnrichmentStatus
from etl.models import Symbol

pytestmark = pytest.mark.django_db

_AT = datetime(2024, 1, 1, tzinfo=UTC)


def _series(symbol) -> ScannedSeries:
    return ScannedSeries(symbol.pk, "1h", _AT, _AT, None, 10)


def test_a_run_reads_its_symbols_markets_once_not_once_a_chunk():
    symbols = [make_symbol(f"CTX{i}", "BINANCE", "CRYPTO") for i in range(4)]
    context = SeriesContext()
    context.symbols_load([_series(s) for s in symbols])
    context.keys([_series(symbols[0])])  # the market and its calendar, once per run
    with CaptureQueriesContext(connection) as queries:
        keys = context.keys([_series(s) for s in symbols[1:]])
    assert len(queries) == 0
    assert [(k.symbol.pk, k.symbol.market_id) for k in keys] == [(s.pk, s.market_id) for s in symbols[1:]]


def test_a_symbol_not_loaded_for_the_run_is_still_found():
    loaded, late = make_symbol("CTXA", "BINANCE", "CRYPTO"), make_symbol("CTXB", "NASDAQ", "STOCK_NASDAQ")
    context = SeriesContext()
    context.symbols_load([_series(loaded)])
    keys = context.keys([_series(loaded), _series(late)])
    assert [(k.symbol.pk, k.symbol.market_id) for k in keys] == [(s.pk, s.market_id) for s in (loaded, late)]


def test_the_chunked_run_over_many_chunks_queries_the_symbols_once(monkeypatch):
    monkeypatch.setattr(feature_batch, "CHUNK_SERIES", 2)
    symbols = [make_symbol(f"CTR{i}", "BINANCE", "CRYPTO") for i in range(6)]
    for i, symbol in enumerate(symbols):
        insert_market_data(symbol, random_candles(80, seed=i))
    with CaptureQueriesContext(connection) as queries:
        result = features_run(symbols=symbols, chunked=True)
    assert result.failed == 0 and EnrichmentStatus.objects.filter(symbol__in=symbols, state="ok").count() == 6
    reads = [q["sql"] for q in queries.captured_queries if 'FROM "symbols"' in q["sql"] or "FROM symbols" in q["sql"]]
    assert len(reads) == 1, reads  # three chunks: one read each before


def test_the_compute_log_has_no_index_of_symbol_alone_and_its_logs_go_with_the_symbol():
    with connection.cursor() as cur:
        cur.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'enrichment_compute_log'")
        defs = [row[0].split(" USING btree ")[1] for row in cur.fetchall()]
    assert sorted(defs) == ["(created_at)", "(id)", "(run_id)", "(symbol_id, timeframe, created_at DESC)"]
    symbol = make_symbol("CTXL", "BINANCE", "CRYPTO")
    insert_market_data(symbol, random_candles(50, seed=3))
    features_run(symbols=[symbol])
    assert EnrichmentComputeLog.objects.filter(symbol=symbol).exists()
    Symbol.objects.filter(pk=symbol.pk).delete()  # the cascade, by compute_log_sym_tf
    assert not EnrichmentComputeLog.objects.filter(symbol_id=symbol.pk).exists()
