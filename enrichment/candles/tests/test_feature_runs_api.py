"""The trigger and the feature runs and backfills as resources, under the one request policy."""

from __future__ import annotations

import pandas as pd
import pytest
from django.urls import reverse

from enrichment.candles.services.backfill import backfill_plan
from enrichment.candles.tests.feature_fixtures import insert_market_data, make_symbol, random_candles
from enrichment.models import BackfillState, FeatureRun

pytestmark = pytest.mark.django_db
TRIGGER = "/api/v1/enrichment/trigger"


@pytest.fixture
def btc():
    symbol = make_symbol("BTC", "BINANCE", "CRYPTO")
    insert_market_data(symbol, random_candles(50, seed=7))
    return symbol


@pytest.fixture
def staff(api_client_for):
    return api_client_for(staff=True, perms=("enrichment.compute_features", "enrichment.run_backfill"))


def test_trigger_answers_202_with_location_and_takes_camel_case(staff, btc, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        response = staff.post(TRIGGER, {"symbols": ["BTC"], "timeframes": ["15m"]}, format="json")
    assert response.status_code == 202, response.json()
    answer = response.json()
    assert response["Location"] == answer["location"] and answer["location"].endswith(
        f"/api/runs/features/{answer['run_id']}/"
    )
    assert answer["status"] == "queued" and answer["ignored_options"] == {}
    assert staff.get(response["Location"]).json()["params"]["symbols"] == ["BTC"]
    inline = staff.post(TRIGGER, {"symbols": ["BTC"], "runAsync": False}, format="json")
    assert inline.status_code == 200 and inline.json()["rows_computed"] == 50


def test_trigger_refuses_an_unknown_key_naming_it(staff, btc):
    response = staff.post(TRIGGER, {"symbol": ["BTC"]}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "unknown_field"
    assert "symbol" in response.json()["errors"]
    assert not FeatureRun.objects.exists()


def test_reads_refuse_unknown_parameters(staff, btc):
    assert staff.get("/api/v1/enrichment/metrics?verbose=1").json()["code"] == "unknown_field"
    assert staff.get("/api/v1/market/features/BTC/15m?limit=5&format=json").status_code == 200
    assert staff.get("/api/v1/market/features/BTC/15m?lmit=5").status_code == 400


def test_feature_runs_list_filter_cancel_retry(staff, btc, django_capture_on_commit_callbacks):
    compute = FeatureRun.objects.create(params={"symbols": ["BTC"], "timeframes": [], "full": True})
    backfill_run = FeatureRun.objects.create(kind=FeatureRun.Kind.BACKFILL, params={})
    listed = staff.get("/api/runs/features/").json()["results"]
    assert [r["id"] for r in listed] == [backfill_run.pk, compute.pk]
    assert [r["id"] for r in staff.get("/api/runs/features/?kind=compute").json()["results"]] == [compute.pk]
    assert staff.post(f"/api/runs/features/{compute.pk}/cancel/").json()["cancel_requested"] is True
    with django_capture_on_commit_callbacks(execute=False):
        retried = staff.post(f"/api/runs/features/{compute.pk}/retry/")
    assert retried.status_code == 202
    assert FeatureRun.objects.get(pk=retried.json()["run_id"]).params == compute.params
    assert staff.post(f"/api/runs/features/{backfill_run.pk}/retry/").status_code == 409


def test_backfills_list_and_retry(staff, btc, django_capture_on_commit_callbacks):
    start = pd.Timestamp(1_700_000_000, unit="s", tz="UTC").to_pydatetime()
    state = backfill_plan(
        symbol=btc, timeframe="15m", source="market_data", start=start, end=start + pd.Timedelta(days=1)
    )
    listed = staff.get("/api/runs/backfills/?state=pending&symbol=btc").json()["results"]
    assert [r["id"] for r in listed] == [state.pk] and listed[0]["symbol"] == "BTC"
    assert staff.get("/api/runs/backfills/?status=pending").status_code == 400
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = staff.post(f"/api/runs/backfills/{state.pk}/retry/")
    assert response.status_code == 202 and response["Location"].endswith(f"/api/runs/backfills/{state.pk}/")
    assert len(queued) == 1
    BackfillState.objects.filter(pk=state.pk).update(state=BackfillState.State.DONE)
    assert staff.post(f"/api/runs/backfills/{state.pk}/retry/").status_code == 409


def test_backfills_are_created_and_queued_through_the_api(
    staff, btc, api_anon, api_client_for, django_capture_on_commit_callbacks
):
    body = {"symbols": ["BTC@BINANCE"], "timeframes": ["15m", "1h"], "source": "market_data", "chunkBars": 500}
    body |= {"start": "2023-11-14T00:00:00Z", "end": "2023-11-16T00:00:00Z"}
    assert api_anon.post("/api/runs/backfills/", body, format="json").status_code == 401
    assert api_client_for(staff=True).post("/api/runs/backfills/", body, format="json").status_code == 403
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = staff.post("/api/runs/backfills/", body, format="json")
    assert response.status_code == 202, response.json()
    answer = response.json()
    assert answer["queued"] == 2 and len(queued) == 2
    assert {b["timeframe"] for b in answer["backfills"]} == {"15m", "1h"}
    assert response["Location"].endswith(f"/api/runs/backfills/{answer['run_id']}/")
    state = BackfillState.objects.get(pk=answer["run_id"])
    assert (state.chunk_bars, state.range_start.isoformat()) == (500, "2023-11-14T00:00:00+00:00")
    assert staff.get(response["Location"]).json()["id"] == state.pk
    # Without a range, a series takes its local candles' span.
    BackfillState.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=False):
        local = staff.post("/api/runs/backfills/", {"symbols": ["BTC"], "timeframes": ["15m"]}, format="json").json()
    first_bar = pd.Timestamp(1_700_000_000, unit="s", tz="UTC").to_pydatetime()  # random_candles' start
    assert BackfillState.objects.get(pk=local["run_id"]).range_start == first_bar


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"symbols": ["NOPE"], "timeframes": ["1h"]}, "symbols"),
        ({"symbols": ["BTC"], "timeframes": ["7x"]}, None),
        ({"symbols": ["BTC"], "timeframes": ["1h"], "source": "nowhere"}, None),
        (
            {"symbols": ["BTC"], "timeframes": ["1m"], "start": "1900-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"},
            None,
        ),
        (
            {"symbols": ["BTC"], "timeframes": ["1h"], "start": "2024-01-02T00:00:00Z", "end": "2024-01-01T00:00:00Z"},
            "start",
        ),
        ({"symbols": [], "timeframes": ["1h"]}, "symbols"),
        ({"symbol": ["BTC"], "timeframes": ["1h"]}, "symbol"),
    ],
)
def test_a_bad_backfill_request_is_a_400_naming_the_problem(staff, btc, body, field):
    response = staff.post("/api/runs/backfills/", body, format="json")
    assert response.status_code == 400, response.json()
    if field:
        assert field in response.json()["errors"], response.json()
    assert not BackfillState.objects.exists()


def test_the_admin_creates_backfills_with_the_same_service(btc, admin_client, django_capture_on_commit_callbacks):
    url = reverse("admin:enrichment_backfill_create")
    assert admin_client.get(url).status_code == 200
    assert url in admin_client.get(reverse("admin:enrichment_backfillstate_changelist")).content.decode()
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = admin_client.post(
            url,
            {"symbols": "BTC", "timeframes": "15m, 1h", "source": "market_data", "chunk_bars": 1000}
            | {"start": "2023-11-14 00:00", "end": "2023-11-16 00:00"},
        )
    assert response.status_code == 302 and len(queued) == 2
    assert sorted(BackfillState.objects.values_list("timeframe", flat=True)) == ["15m", "1h"]
    bad = admin_client.post(url, {"symbols": "NOPE", "timeframes": "1h", "source": "market_data", "chunk_bars": 10})
    assert bad.status_code == 200 and "unknown symbol" in bad.content.decode()


def test_an_unknown_symbol_in_a_trigger_body_is_a_400_naming_it(staff, btc):
    # Schemathesis over HTTP found a 404 here: the path exists, the body is what is wrong.
    response = staff.post(TRIGGER, {"symbols": ["NOPE"], "timeframes": ["15m"]}, format="json")
    assert response.status_code == 400 and "NOPE" in response.json()["errors"]["symbols"][0]
    assert not FeatureRun.objects.exists()
