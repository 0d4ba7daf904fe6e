"""The integrity summaries (etl.summaries): kept by the writers' statement triggers,
equal to a full recount after every kind of write, read in a few rows."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule

from etl import events, locks, selectors, services, summaries, tasks
from etl.errors import DomainError
from etl.health import health_report
from etl.models import (
    AssetClass,
    IntegritySummary,
    Market,
    MarketData,
    SummaryRecount,
    Symbol,
    SymbolSource,
)
from etl.selectors import _health, _indicators
from etl.services import summaries as summary_services

pytestmark = pytest.mark.django_db

# The status as it was computed before the summaries: a scan of market_data and symbols.
# Kept here as the oracle the summaries must agree with, number for number.
OLD_CANDLE_STATS_SQL = """
SELECT COALESCE(m.code, md.market) AS market, count(*), count(*) FILTER (WHERE md.symbol_id IS NULL),
       count(*) FILTER (WHERE ac.code IS NOT NULL),
       count(*) FILTER (WHERE ac.code IS NOT NULL AND md.asset_class = ac.code)
FROM market_data md LEFT JOIN symbols s ON s.id = md.symbol_id
LEFT JOIN markets m ON m.id = s.market_id LEFT JOIN asset_classes ac ON ac.id = s.asset_class_id
GROUP BY 1
"""
OLD_SYMBOL_STATS_SQL = """
SELECT m.code, count(*) FILTER (WHERE s.is_active),
       count(*) FILTER (WHERE s.is_active AND (s.enriched_at IS NOT NULL OR s.name <> '')),
       avg(s.data_quality_score) FILTER (WHERE s.is_active)
FROM symbols s JOIN markets m ON m.id = s.market_id GROUP BY 1
"""


def old_integrity_status() -> dict:
    keys = ("candles", "without_symbol", "class_known", "class_consistent")
    blank = {k: 0 for k in (*keys, "symbols_active", "symbols_enriched")}
    markets: dict[str, dict] = {}
    with connection.cursor() as cur:
        cur.execute(OLD_CANDLE_STATS_SQL)
        for market, *values in cur.fetchall():
            markets.setdefault(market, dict(blank)).update(zip(keys, values, strict=True))
        cur.execute(OLD_SYMBOL_STATS_SQL)
        for market, active, enriched, mean in cur.fetchall():
            row = markets.setdefault(market, dict(blank))
            row.update(symbols_active=active, symbols_enriched=enriched)
            row["mean_quality"] = round(float(mean), 1) if mean is not None else None
        cur.execute("SELECT avg(data_quality_score) FROM symbols WHERE is_active")
        mean_all = cur.fetchone()[0]
    total = {k: sum(r[k] for r in markets.values()) for k in blank}
    total["mean_quality"] = round(float(mean_all), 1) if mean_all is not None else None
    overall = _indicators(total)
    checks = _health(overall)
    return {
        "status": "healthy" if all(c["ok"] for c in checks) else "attention",
        "overall": overall,
        "checks": checks,
        "markets": {code: _indicators(row) for code, row in sorted(markets.items())},
        "weights": selectors.QUALITY_WEIGHTS,
    }


@pytest.fixture
def exact(assert_summaries_exact):
    """After a write: no drift, and the status equals the old scan's, number for number."""

    def check() -> None:
        assert selectors.integrity_status() == old_integrity_status()
        assert_summaries_exact()
        assert selectors.integrity_status() == old_integrity_status()

    return check


def candle(ticker: str, market: str, day: int, **kw) -> MarketData:
    return MarketData(
        ticker=ticker,
        market=market,
        timeframe="1d",
        ts=datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=day),
        open=Decimal(1),
        high=Decimal(2),
        low=Decimal(1),
        close=Decimal(2),
        volume=Decimal(5),
        **kw,
    )


def test_inserts_updates_and_deletes_of_candles_keep_the_summary_exact(reference_data, exact):
    nasdaq = Market.objects.get(code="NASDAQ")
    stock = AssetClass.objects.get(code="STOCK_NASDAQ")
    aapl = Symbol.objects.create(ticker="AAPL", market=nasdaq, asset_class=stock)
    MarketData.objects.bulk_create(
        [candle("AAPL", "NASDAQ", d, symbol=aapl, asset_class="STOCK_NASDAQ") for d in range(4)]
        + [candle("AAPL", "NASDAQ", d, symbol=aapl, asset_class=None) for d in range(4, 6)]
        + [candle("AAPL", "NASDAQ", d, symbol=aapl, asset_class="  ") for d in range(6, 7)]
        + [candle("AAPL", "NASDAQ", d, symbol=aapl, asset_class="ETF") for d in range(7, 9)]
        + [candle("MSFT", "NASDAQ", d) for d in range(3)]
        + [candle("THYAO", "bist", d) for d in range(2)]  # a raw market no symbol has
    )
    exact()
    overall = selectors.integrity_status()["overall"]
    assert (overall["candles"], overall["candles_without_symbol"]) == (14, 5)
    assert overall["asset_class_consistency"] == pytest.approx(100 * 4 / 9, abs=0.01)

    MarketData.objects.filter(asset_class__isnull=True).update(asset_class="STOCK_NASDAQ")
    exact()
    MarketData.objects.filter(ticker="MSFT").update(symbol=aapl)  # linked by hand
    exact()
    MarketData.objects.filter(ticker="AAPL", asset_class="ETF").delete()
    MarketData.objects.filter(market="bist").delete()
    exact()
    assert summaries.unlinked_pairs_read() == []
    assert selectors.symbol_sync_status()["unsynced_pairs"] == 0


def test_sync_links_and_the_status_follows(reference_data, make_candles, exact):
    make_candles([("BTCUSDT", "BINANCE"), ("ETHUSDT", "BINANCE")], bars=5, asset_class="CRYPTO")
    make_candles([("THYAO", "BIST")], bars=5, asset_class="BIST")
    make_candles([("AAPL", "NASDAQ")], bars=5, asset_class="STOCK_NASDAQ")
    exact()
    before = selectors.symbol_sync_status()
    assert (before["candles_without_symbol"], before["unsynced_pairs"], before["in_sync"]) == (20, 4, False)
    assert before["candles_total_estimate"] == 20

    result = services.symbols_sync(venues=["BINANCE", "BIST"])
    assert result.candles_without_symbol == 5
    exact()
    after = selectors.symbol_sync_status()
    assert (after["candles_without_symbol"], after["unsynced_pairs"]) == (5, 1)
    assert after["symbols"]["total"] == 3
    assert after["symbols"]["by_source"] == {"discovered": {"total": 3, "active": 3, "low_confidence": 0}}
    services.symbols_sync()
    exact()
    assert selectors.symbol_sync_status()["in_sync"]


def test_a_change_of_a_symbols_class_moves_its_candles_without_recounting_them(reference_data, make_candles, exact):
    make_candles([("BTCUSDT", "BINANCE")], bars=6, asset_class="CRYPTO")
    services.symbols_sync()
    btc = Symbol.objects.get(ticker="BTCUSDT")
    assert selectors.integrity_status()["overall"]["asset_class_consistency"] == 100.0
    summaries.summaries_fold()  # the tallies the move reads are folded ...
    Symbol.objects.filter(pk=btc.pk).update(asset_class=AssetClass.objects.get(code="ETF"))
    exact()
    assert selectors.integrity_status()["overall"]["asset_class_consistency"] == 0.0
    MarketData.objects.bulk_create([candle("BTCUSDT", "BINANCE", 40, symbol=btc, asset_class="ETF")])
    # ... or still pending: the move adds both.
    Symbol.objects.filter(pk=btc.pk).update(asset_class=None)
    exact()
    assert selectors.integrity_status()["overall"]["asset_class_consistency"] is None
    Symbol.objects.filter(pk=btc.pk).update(asset_class=AssetClass.objects.get(code="CRYPTO"))
    exact()
    AssetClass.objects.filter(code="CRYPTO").update(code="CRYPTOCURRENCY")  # a renamed code
    exact()
    assert selectors.integrity_status()["overall"]["asset_class_consistency"] == 0.0


def test_a_symbol_moved_to_another_market_takes_its_candles_along(reference_data, make_candles, exact):
    make_candles([("AAPL", "NASDAQ")], bars=3, asset_class="STOCK_NASDAQ")
    services.symbols_sync()
    Symbol.objects.filter(ticker="AAPL").update(market=Market.objects.get(code="NYSE"))
    exact()
    assert selectors.integrity_status()["markets"]["NYSE"]["candles"] == 3


def test_symbol_numbers_follow_enrichment_activity_and_deletion(reference_data, exact):
    nasdaq = Market.objects.get(code="NASDAQ")
    a = Symbol.objects.create(ticker="A", market=nasdaq, source=SymbolSource.MANUAL, inference_confidence=0.5)
    Symbol.objects.create(ticker="B", market=nasdaq, source=SymbolSource.DISCOVERED, name="Bee")
    exact()
    Symbol.objects.filter(pk=a.pk).update(enriched_at=timezone.now(), data_quality_score=80, sector="Tech")
    exact()
    status = selectors.integrity_status()
    assert status["overall"]["enrichment_coverage"] == 100.0  # A enriched, B partially (it has a name)
    assert status["overall"]["mean_symbol_quality_score"] == 80.0
    Symbol.objects.filter(pk=a.pk).update(is_active=False)
    exact()
    by_source = selectors.symbol_sync_status()["symbols"]["by_source"]
    assert by_source["manual"] == {"total": 1, "active": 0, "low_confidence": 1}
    Symbol.objects.filter(pk=a.pk).delete()
    exact()


def test_deleting_a_symbol_unlinks_its_candles_in_the_summary(reference_data, make_candles, exact):
    make_candles([("AAPL", "NASDAQ")], bars=3)
    services.symbols_sync()
    Symbol.objects.get(ticker="AAPL").delete()  # Django sets the candles' symbol to NULL first
    exact()
    assert selectors.symbol_sync_status()["candles_without_symbol"] == 3


def test_clean_up_merges_and_deactivations_keep_the_summary_exact(reference_data, make_candles, exact):
    bist = Market.objects.get(code="BIST")
    Symbol.objects.create(ticker="THYAO", market=bist)
    lower = Symbol.objects.create(ticker="thyao", market=bist)
    Symbol.objects.create(ticker="MSFT", market=Market.objects.get(code="NASDAQ"))
    make_candles([("THYAO", "BIST")], bars=2)
    MarketData.objects.filter(ticker="THYAO").update(symbol=lower)
    make_candles([("AKBNK", "BIST")], bars=3)
    exact()
    report = services.symbols_validate_cleanup()
    assert report.counts["active_without_data"] == 2  # read from the tallies: THYAO and MSFT
    assert report.counts["unlinked_candles"] == 1  # read from the unlinked pairs
    services.symbols_validate_cleanup(fix=True, fixes=["case_variant", "active_without_data", "unlinked_candles"])
    exact()
    assert not Symbol.objects.get(pk=lower.pk).is_active


def test_truncate_empties_the_candle_numbers(reference_data, make_candles, exact):
    make_candles([("AAPL", "NASDAQ")], bars=3)
    services.symbols_sync()
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the deferred FK checks of this test's transaction
        cur.execute("TRUNCATE market_data")
    exact()
    assert selectors.integrity_status()["overall"]["candles"] == 0


def test_raw_sql_writers_are_counted_too(reference_data, exact):
    """COPY and INSERT … SELECT … ON CONFLICT, the import's own statements."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO market_data (ticker, market, timeframe, ts, open, high, low, close, volume, asset_class)"
            " SELECT 'T' || (i % 7), 'NASDAQ', '1d', '2024-01-01'::timestamptz + (i / 7) * interval '1 day',"
            " 1, 1, 1, 1, 1, 'STOCK' FROM generate_series(0, 699) i"
        )
        exact()
        # Half duplicates, half new, the duplicates overwriting their asset class.
        cur.execute(
            "INSERT INTO market_data (ticker, market, timeframe, ts, open, high, low, close, volume, asset_class)"
            " SELECT 'T' || (i % 7), 'NASDAQ', '1d', '2024-01-01'::timestamptz + (i / 7) * interval '1 day',"
            " 2, 2, 2, 2, 2, NULL FROM generate_series(350, 1049) i"
            " ON CONFLICT (ticker, market, timeframe, ts) DO UPDATE SET asset_class = EXCLUDED.asset_class"
        )
        exact()
        with cur.copy(
            "COPY market_data (ticker, market, timeframe, ts, open, high, low, close, volume) FROM STDIN"
        ) as cp:
            for i in range(50):
                cp.write_row(
                    (
                        "COPIED",
                        "BINANCE",
                        "1h",
                        datetime(2024, 1, 1, i % 24, tzinfo=UTC) + timedelta(days=i // 24),
                        1,
                        1,
                        1,
                        1,
                        1,
                    )
                )
    exact()
    assert selectors.symbol_sync_status()["unsynced_pairs"] == 8


# ---------------------------------------------------------------------------
# Reading, folding, recounting


def test_reads_are_exact_before_and_after_a_fold_and_a_busy_fold_is_skipped(reference_data, make_candles):
    make_candles([("AAPL", "NASDAQ"), ("MSFT", "NASDAQ")], bars=4)
    pending = selectors.integrity_status()
    make_candles([("IBM", "NYSE")], bars=2)
    unfolded = summaries.summary_read("candles.", fold=False)
    assert unfolded.total("candles.orphan") == 10
    assert unfolded.total("candles.unlinked_pairs") == 3
    assert summaries.summaries_fold().folded
    assert summaries.summary_read("candles.", fold=False).rows() == unfolded.rows()
    assert pending["overall"]["candles"] == 8


def test_recount_reports_drift_logs_counts_degrades_health_and_repairs(reference_data, make_candles, caplog):
    make_candles([("AAPL", "NASDAQ")], bars=4)
    services.symbols_sync()
    summaries.summaries_fold()
    # Something that bypassed the triggers (here: a hand edit of the totals).
    IntegritySummary.objects.filter(metric="candles.class_null").update(value=999)
    with connection.cursor() as cur:
        cur.execute("DELETE FROM integrity_symbol_tallies")
    assert health_report().checks["summary_drift"] == {"ok": True}

    with caplog.at_level(logging.WARNING, logger="etl.services.summaries"):
        result = summary_services.summary_recount(requested_by="test")
    assert result.status == "succeeded"
    assert result.drift_count == 2
    assert {(d["table"], d["metric"], d["kept"], d["recounted"]) for d in result.drift} == {
        ("summary", "candles.class_null", 999, 4),
        ("symbol_tallies", f"symbol {Symbol.objects.get().pk} class None", 0, 4),
    }
    assert "summary drift" in caplog.text
    run = SummaryRecount.objects.get(pk=result.run_id)
    assert (run.drift_count, run.repaired, run.result["candles"]["drift"]) == (2, True, 2)
    check = health_report().checks["summary_drift"]
    assert not check["ok"] and check["drift"] == 2
    assert health_report().status == "degraded"

    assert summary_services.summary_check() == []  # repaired
    assert selectors.integrity_status()["overall"]["candles"] == 4
    clean = summary_services.summary_recount(requested_by="test")
    assert clean.drift_count == 0
    assert health_report().checks["summary_drift"] == {"ok": True}


def test_recount_without_repair_changes_nothing(reference_data, make_candles):
    make_candles([("AAPL", "NASDAQ")], bars=2)
    summaries.summaries_fold()
    IntegritySummary.objects.filter(metric="candles.orphan").update(value=5)
    result = summary_services.summary_recount(repair=False)
    assert (result.drift_count, result.repaired) == (1, False)
    assert summaries.summary_read("candles.", fold=False).total("candles.orphan") == 5


def test_the_drift_metric_is_exported(reference_data, make_candles, client):
    make_candles([("AAPL", "NASDAQ")], bars=2)
    summaries.summaries_fold()
    IntegritySummary.objects.filter(metric="candles.orphan").update(value=1)
    summary_services.summary_recount()
    body = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert 'mytrader_summary_drift_values{source="candles"} 1.0' in body
    assert 'mytrader_summary_drift_total{source="candles"} 1.0' in body


def test_the_initial_fill_counts_what_is_there(reference_data, make_candles):
    make_candles([("AAPL", "NASDAQ")], bars=3)
    services.symbols_sync()
    for table in (
        "integrity_summary",
        "integrity_summary_deltas",
        "integrity_symbol_tallies",
        "integrity_symbol_tally_deltas",
        "integrity_unlinked_pairs",
        "integrity_unlinked_pair_deltas",
    ):
        with connection.cursor() as cur:
            cur.execute(f"DELETE FROM {table}")  # noqa: S608 - constant names
    assert summary_services.summary_check() != []
    summary_services.summary_fill(sources=["candles", "symbols"])
    assert summary_services.summary_check() == []
    assert selectors.integrity_status() == old_integrity_status()


def test_unknown_source_is_refused():
    with pytest.raises(DomainError, match="unknown"):
        summary_services.summary_recount_create(sources=["nope"])


def test_recount_command(reference_data, make_candles, capsys):
    make_candles([("AAPL", "NASDAQ")], bars=2)
    call_command("recount_summaries", "--json")
    out = capsys.readouterr().out
    assert '"drift_count": 0' in out and '"status": "succeeded"' in out


def test_the_bootstrap_keeps_the_fold_and_recount_schedules(reference_data):
    names = set(Schedule.objects.values_list("name", flat=True))
    assert {"summary-fold", "summary-recount"} <= names
    Schedule.objects.filter(name="summary-recount").delete()
    services.reference_data_bootstrap()
    services.reference_data_bootstrap()
    assert Schedule.objects.filter(name="summary-recount").count() == 1


def test_rows_that_leave_without_a_delete_trigger_are_forgotten_first(reference_data, make_candles, exact):
    """Dropping a partition fires no DELETE trigger: its rows are taken out beforehand."""
    make_candles([("AAPL", "NASDAQ"), ("MSFT", "NASDAQ")], bars=4)
    services.symbols_sync()
    make_candles([("IBM", "NYSE")], bars=2)
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the deferred FK checks of this test's transaction
        cur.execute("CREATE TEMP TABLE leaving AS SELECT * FROM market_data WHERE ticker IN ('AAPL', 'IBM')")
        summaries.summaries_forget(table="leaving")
        cur.execute("ALTER TABLE market_data DISABLE TRIGGER integrity_summary_del")
        cur.execute("DELETE FROM market_data WHERE ticker IN ('AAPL', 'IBM')")
        cur.execute("ALTER TABLE market_data ENABLE TRIGGER integrity_summary_del")
    exact()
    assert selectors.integrity_status()["overall"]["candles"] == 4


# ---------------------------------------------------------------------------
# The doors of the recount: admin, API (the command is above)


def test_admin_recount_now_and_again(reference_data, admin_client, django_capture_on_commit_callbacks, monkeypatch):
    monkeypatch.setattr("django_q.conf.Conf.SYNC", True)  # run the queued task right here
    page = admin_client.get("/admin/etl/summaryrecount/").content.decode()
    assert "Recount now" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/admin/etl/summaryrecount/recount/")
    assert response.status_code == 302
    run = SummaryRecount.objects.get()
    assert (run.status, run.requested_by, run.drift_count) == ("succeeded", "admin", 0)
    assert admin_client.get(f"/admin/etl/summaryrecount/{run.pk}/change/").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post("/admin/etl/summaryrecount/", {"action": "recount_again", "_selected_action": [run.pk]})
    assert SummaryRecount.objects.filter(status="succeeded").count() == 2
    assert admin_client.get("/admin/etl/integritysummary/").status_code == 200


def test_recount_runs_api(reference_data, api_anon, api_client_for, django_capture_on_commit_callbacks, monkeypatch):
    monkeypatch.setattr("django_q.conf.Conf.SYNC", True)  # run the queued task right here
    assert api_anon.get("/api/runs/summary-recounts/").status_code in (401, 403)
    assert api_client_for().post("/api/runs/summary-recounts/", {}, format="json").status_code == 403
    staff = api_client_for(staff=True, perms=["etl.recount_summaries"])
    assert staff.post("/api/runs/summary-recounts/", {"sources": ["nope"]}, format="json").status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post("/api/runs/summary-recounts/", {"sources": ["symbols"]}, format="json")
    assert response.status_code == 202, response.content
    run_id = response.json()["run_id"]
    body = api_client_for().get(f"/api/runs/summary-recounts/{run_id}/").json()
    assert (body["status"], body["sources"], body["drift_count"]) == ("succeeded", ["symbols"], 0)
    assert staff.post(f"/api/runs/summary-recounts/{run_id}/cancel/").json()["cancel_requested"] is False
    queued = summary_services.summary_recount_create(requested_by="t")
    assert staff.post(f"/api/runs/summary-recounts/{queued.pk}/cancel/").json()["cancel_requested"] is True
    assert summary_services.summary_recount(run=queued).status == "cancelled"
    with django_capture_on_commit_callbacks(execute=True):
        again = staff.post(f"/api/runs/summary-recounts/{run_id}/retry/")
    assert again.status_code == 202 and again.json()["sources"] == ["symbols"]
    assert len(api_client_for().get("/api/runs/summary-recounts/").json()["results"]) == 3


def test_summary_migration_lock_is_the_registered_one():
    """The triggers take etl.locks.SUMMARY_SYMBOLS by its number (migrations are frozen SQL)."""
    import importlib

    namespace, item = locks.SUMMARY_SYMBOLS.key()
    for module in (
        "etl.migrations.0015_integrity_summary_triggers",
        "enrichment.migrations.0010_integrity_summary_triggers",
    ):
        migration = importlib.import_module(module)
        assert f"({namespace}, {item})" in migration.LOCK_SHARED + migration.LOCK_EXCLUSIVE, module
        assert f"pg_advisory_xact_lock_shared({namespace}, {item})" in migration.CREATE


@pytest.mark.django_db(transaction=True)
def test_the_scheduled_fold_vacuums_the_deltas_so_later_reads_scan_no_dead_rows(monkeypatch):
    """The feature step of 100,000 series leaves some 300,000 summary deltas; once folded,
    each read of the summaries (the dashboard reads them three times) scanned their dead rows
    until autovacuum came by. The schedule's and the pipeline's folds vacuum a bloated delta
    table; a page's read folds without vacuuming."""
    monkeypatch.setattr(summaries, "READ_FOLD_SECONDS", 0)  # this read folds
    n = 20_000

    def insert() -> None:
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO integrity_summary_deltas (market, metric, value)"
                " SELECT 'NASDAQ', 'candles.orphan', g %% 2 FROM generate_series(1, %s) g",
                [n],
            )

    def size() -> int:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_relation_size('integrity_summary_deltas')")
            return cur.fetchone()[0]

    insert()
    assert summaries.summary_read("candles.").value("candles.orphan", "NASDAQ") == n // 2  # a read folds
    assert size() > events.VACUUM_ABOVE_BYTES  # and leaves the dead rows
    insert()
    result = tasks.summaries_fold()
    assert result["moved"] == n and result["values"] == 1
    assert size() == 0  # the dead rows are gone and the empty pages with them
    assert summaries.summary_read("candles.", fold=False).value("candles.orphan", "NASDAQ") == n


def test_a_run_table_gets_its_runs_counted_when_its_triggers_are_installed(assert_summaries_exact):
    """An existing database learns the `runs.*` summaries at its next migrate: the runs
    already in the window are counted once, and installing again counts nothing twice."""
    from etl.event_triggers import event_triggers_install
    from etl.models import PipelineRun

    with connection.cursor() as cur:
        for name in ("integrity_runs_ins", "integrity_runs_upd", "integrity_runs_del"):
            cur.execute(f"DROP TRIGGER {name} ON pipeline_runs")
    PipelineRun.objects.bulk_create([PipelineRun(status="failed"), PipelineRun(status="succeeded")])
    assert summary_services.summary_check(sources=["runs"])  # not counted yet
    event_triggers_install()
    assert_summaries_exact(sources=["runs"])
    event_triggers_install()
    assert_summaries_exact(sources=["runs"])
    PipelineRun.objects.create(status="failed")
    assert_summaries_exact(sources=["runs"])


def test_installing_the_run_triggers_waits_for_another_install():
    """Two hosts migrating at once: each reads which run tables have no trigger yet and counts
    their window's runs; under one lock the second sees the first's triggers and counts nothing."""
    import psycopg
    from django.db.utils import OperationalError

    from etl.event_triggers import event_triggers_install

    params = connection.get_connection_params()
    other = psycopg.connect(**{k: v for k, v in params.items() if k in ("host", "port", "user", "password", "dbname")})
    try:
        other.execute("SELECT pg_advisory_lock(%s, %s)", locks.TRIGGERS_INSTALL.key())
        with connection.cursor() as cur:
            cur.execute("SET LOCAL lock_timeout = '200ms'")
        with pytest.raises(OperationalError, match="lock timeout"):
            event_triggers_install()
    finally:
        other.close()
