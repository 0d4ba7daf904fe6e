"""The four doors of the feature step: API, admin, commands, schedules/tasks."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django_q.models import Schedule

from enrichment.candles.services.feature_runs import features_run
from enrichment.candles.services.schedules import schedules_ensure
from enrichment.candles.tasks import features_scheduled
from enrichment.candles.tests.feature_fixtures import insert_market_data, make_market, make_symbol, random_candles
from enrichment.models import BackfillState, EnrichmentStatus, FeatureRun, MarketDataV2

pytestmark = pytest.mark.django_db
PERM = "enrichment.compute_features"


@pytest.fixture
def btc():
    symbol = make_symbol("BTC", "BINANCE", "CRYPTO")
    insert_market_data(symbol, random_candles(300, seed=41))
    return symbol


@pytest.fixture
def computed(btc):
    features_run()
    return btc


# --- API ---------------------------------------------------------------------

READS = [
    "/api/v1/enrichment/status/BTC",
    "/api/v1/enrichment/metrics",
    "/api/v1/data/quality/BTC",
    "/api/v1/market/features/BTC/15m",
]


@pytest.mark.parametrize("url", READS + ["/api/v1/enrichment/trigger"])
def test_anonymous_is_refused_everywhere(api_anon, computed, url):
    response = api_anon.post(url, {}) if url.endswith("trigger") else api_anon.get(url)
    assert response.status_code in (401, 403)


@pytest.mark.parametrize("url", READS)
def test_any_authenticated_user_reads(api_client_for, computed, url):
    assert api_client_for().get(url).status_code == 200


def test_status_and_metrics_describe_the_series(api_client_for, computed):
    client = api_client_for()
    status = client.get("/api/v1/enrichment/status/BTC@BINANCE").json()
    assert status["timeframes"][0]["timeframe"] == "15m" and status["timeframes"][0]["rows"] == 300
    metrics = client.get("/api/v1/enrichment/metrics").json()
    assert metrics["series"] == 1 and metrics["rows"] == 300 and metrics["computations"] >= 1


def test_unknown_symbol_is_404_and_bad_parameters_are_400(api_client_for, computed):
    client = api_client_for()
    assert client.get("/api/v1/enrichment/status/NOPE").status_code == 404
    bad_tf = client.get("/api/v1/market/features/BTC/7x")
    assert bad_tf.status_code == 400 and "timeframe" in bad_tf.json()["detail"]
    bad_date = client.get("/api/v1/market/features/BTC/15m?from=yesterday")
    assert bad_date.status_code == 400 and bad_date.json()["code"] == "bad_date"
    assert client.get("/api/v1/market/features/BTC/15m?limit=x").status_code == 400


def test_features_in_a_time_range_as_json_and_csv(api_client_for, computed):
    client = api_client_for()
    rows = list(MarketDataV2.objects.filter(symbol=computed).order_by("ts").values_list("ts", flat=True))
    start, end = rows[100].isoformat(), rows[150].isoformat()
    body = client.get("/api/v1/market/features/BTC/15m", {"from": start, "to": end}).json()
    assert body["count"] == 50 and body["results"][0]["ts"].startswith(rows[100].strftime("%Y-%m-%dT%H:%M"))
    first = body["results"][0]
    assert first["trend_direction"] in ("up", "down", "neutral") and isinstance(first["atr_14"], float)
    response = client.get("/api/v1/market/features/BTC/15m", {"from": start, "to": end, "format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(parsed) == 50 and float(parsed[0]["atr_14"]) == first["atr_14"]


def test_quality_lists_days(api_client_for, computed):
    body = api_client_for().get("/api/v1/data/quality/BTC?timeframe=15m").json()
    assert body["summary"]["days"] >= 1 and body["days"][0]["expected_bars"] > 0


def test_trigger_needs_staff_with_the_permission(api_client_for, btc):
    assert api_client_for().post("/api/v1/enrichment/trigger", {}, format="json").status_code == 403
    assert api_client_for(staff=True).post("/api/v1/enrichment/trigger", {}, format="json").status_code == 403
    staff = api_client_for(staff=True, perms=(PERM,))
    response = staff.post("/api/v1/enrichment/trigger", {"symbols": ["BTC"], "run_async": False}, format="json")
    assert response.status_code == 200 and response.json()["rows_computed"] == 300
    assert FeatureRun.objects.get(pk=response.json()["run_id"]).status == "succeeded"
    bad = staff.post("/api/v1/enrichment/trigger", {"timeframes": ["nope"]}, format="json")
    assert bad.status_code == 400


def test_trigger_queues_a_run_on_commit(api_client_for, btc, django_capture_on_commit_callbacks, monkeypatch):
    monkeypatch.setattr("django_q.conf.Conf.SYNC", True)  # run the queued task right here
    staff = api_client_for(staff=True, perms=(PERM,))
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post("/api/v1/enrichment/trigger", {"symbols": ["BTC"]}, format="json")
    assert response.status_code == 202
    assert FeatureRun.objects.get(pk=response.json()["run_id"]).status == "succeeded"


# --- commands ----------------------------------------------------------------


def test_compute_features_command_json(btc, capsys):
    call_command("compute_features", "--symbol", "BTC", "--timeframe", "15m", "--json")
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["rows_computed"] == 300
    call_command("compute_features", "--json")
    assert json.loads(capsys.readouterr().out)["rows_computed"] == 0
    call_command("compute_features", "--full", "--json")
    assert json.loads(capsys.readouterr().out)["rows_computed"] == 300


def test_compute_features_command_refuses_unknown_symbols(btc):
    with pytest.raises(CommandError, match="unknown symbol"):
        call_command("compute_features", "--symbol", "NOPE")


def test_backfill_command_from_the_local_source(btc, capsys):
    call_command("backfill", "--symbol", "BTC", "--timeframe", "15m", "--chunk-bars", "100", "--json")
    out = json.loads(capsys.readouterr().out)
    assert out["done"] == 1 and out["rows_written"] == 300
    state = BackfillState.objects.get(symbol=btc)
    assert state.state == "done" and state.chunks_done == 3
    with pytest.raises(CommandError, match="--from"):
        call_command("backfill", "--symbol", "BTC", "--timeframe", "15m", "--from", "soon")
    with pytest.raises(CommandError, match="unknown candle source"):
        call_command("backfill", "--symbol", "BTC", "--timeframe", "15m", "--source", "NOWHERE")


# --- schedules and tasks -----------------------------------------------------


def test_default_schedules_are_created_once_and_keep_operator_edits():
    for code in ("BINANCE", "NASDAQ", "BIST"):
        make_market(code)
    Schedule.objects.all().delete()
    created = schedules_ensure(now=datetime(2024, 1, 1, tzinfo=UTC))
    daily = ["features: BIST daily", "features: NASDAQ daily"]
    assert sorted(created) == ["features: BINANCE hourly", *daily, "live: poll"]
    assert Schedule.objects.get(name="live: poll").func == "enrichment.candles.tasks.live_poll"
    nasdaq = Schedule.objects.get(name="features: NASDAQ daily")
    # Half an hour after each close of 2024: 16:00 New York is 21:00 UTC in winter, 20:00 in
    # summer; the early closes at 13:00 (3 July, 29 November, 24 December) 17:00 and 18:00.
    assert nasdaq.cron == "30 17,18,20,21 * * 1,2,3,4,5"
    bist = Schedule.objects.get(name="features: BIST daily")
    assert bist.cron == "0,30 10,15 * * 1,2,3,4,5"  # 18:00 Istanbul = 15:00 UTC; the 12:30 half days
    assert Schedule.objects.get(name="features: BINANCE hourly").cron == "5 * * * *"
    Schedule.objects.filter(pk=nasdaq.pk).update(cron="0 23 * * 1-5")
    assert schedules_ensure() == []
    assert Schedule.objects.get(pk=nasdaq.pk).cron == "0 23 * * 1-5"


def test_a_scheduled_run_skips_while_the_previous_one_still_works(btc):
    from django.db import connections

    from etl.locks import FEATURE_SCHEDULE

    other = connections.create_connection("default")  # another worker, holding the market's lock
    try:
        with other.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s, %s)", FEATURE_SCHEDULE.key("BINANCE"))
        assert features_scheduled(market="BINANCE") == {
            "skipped": True,
            "reason": "the previous scheduled run is still going",
        }
        with other.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s, %s)", FEATURE_SCHEDULE.key("BINANCE"))
    finally:
        other.close()
    result = features_scheduled(market="BINANCE")
    assert result["rows_computed"] == 300
    assert FeatureRun.objects.get().requested_by == "schedule"


# --- admin -------------------------------------------------------------------


def test_admin_pages_render(admin_client, computed):
    status = EnrichmentStatus.objects.get(symbol=computed)
    for name in (
        "marketdatav2",
        "enrichmentstatus",
        "featurerun",
        "enrichmentcomputelog",
        "dataqualitymetric",
        "backfillstate",
    ):
        assert admin_client.get(reverse(f"admin:enrichment_{name}_changelist")).status_code == 200, name
    page = admin_client.get(reverse("admin:enrichment_chart", args=[status.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/vendor/plotly/plotly.min.js" in html and "candles-figure" in html and "sma_20" in html
    assert "/static/enrichment/chart.js" in html
    assert "<script>" not in html  # the CSP allows no inline script
    js = admin_client.get("/static/vendor/plotly/plotly.min.js")
    assert js.status_code == 200
    assert b"plotly" in b"".join(js.streaming_content)[:2000].lower()


def test_admin_action_queues_a_feature_run(admin_client, btc, django_capture_on_commit_callbacks, monkeypatch):
    monkeypatch.setattr("django_q.conf.Conf.SYNC", True)  # run the queued task right here
    features_run()
    status = EnrichmentStatus.objects.get(symbol=btc)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:enrichment_enrichmentstatus_changelist"),
            {"action": "compute_features_full", "_selected_action": [status.pk]},
            follow=True,
        )
    assert response.status_code == 200 and "Queued feature run" in response.content.decode()
    run = FeatureRun.objects.get()
    assert run.status == "succeeded" and run.result["rows_computed"] == 300


def test_admin_backfill_action(admin_client, btc, django_capture_on_commit_callbacks, monkeypatch):
    monkeypatch.setattr("django_q.conf.Conf.SYNC", True)  # run the queued task right here
    from enrichment.candles.services.backfill import backfill_plan

    rows = MarketDataV2.objects.none()
    assert not rows.exists()
    import pandas as pd

    start = pd.Timestamp(1_700_000_000, unit="s", tz="UTC").to_pydatetime()
    end = (pd.Timestamp(1_700_000_000, unit="s", tz="UTC") + pd.Timedelta(days=10)).to_pydatetime()
    state = backfill_plan(symbol=btc, timeframe="15m", source="market_data", start=start, end=end)
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:enrichment_backfillstate_changelist"), {"action": "run_now", "_selected_action": [state.pk]}
        )
    state.refresh_from_db()
    assert state.state == "done" and MarketDataV2.objects.filter(symbol=btc).count() == 300


def test_a_cancelled_run_stops_between_series(btc):
    from enrichment.candles.services.feature_runs import feature_run_create, feature_run_execute
    from etl.progress import Cancelled

    eth = make_symbol("ETH", "BINANCE", "CRYPTO")
    insert_market_data(eth, random_candles(50, seed=42))
    run = feature_run_create(symbols=[], timeframes=[], full=False, requested_by="test")
    FeatureRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    with pytest.raises(Cancelled):
        feature_run_execute(run=run)
    run.refresh_from_db()
    assert run.status == "cancelled" and run.progress_done == 1 and run.progress_total == 2
    assert EnrichmentStatus.objects.count() == 1  # the second series was not touched


def test_a_symbol_written_in_other_digits_is_unknown_not_a_crash(api_client_for, computed):
    # "¹" passes str.isdigit() and fails int(): it was taken for an id (a 500).
    assert api_client_for().get("/api/v1/enrichment/status/¹").status_code == 404
