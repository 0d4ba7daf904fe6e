from __future__ import annotations

from unittest import mock

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from etl import services
from etl.models import DataCorrection, Market, MarketData, PipelineRun, RunStatus, Symbol

pytestmark = pytest.mark.django_db


def test_pipeline_run_pages_show_steps_and_timeline(admin_client, reference_data, make_candles):
    make_candles([("BTCUSDT", "BINANCE")])
    result = services.pipeline_run(steps=["sync", "validate"])
    changelist = admin_client.get(reverse("admin:etl_pipelinerun_changelist"))
    assert changelist.status_code == 200
    body = changelist.content.decode()
    assert "Run pipeline" in body and "Sync symbols" in body
    assert "Data integrity" in body and "BINANCE" in body
    detail = admin_client.get(reverse("admin:etl_pipelinerun_change", args=[result.run_id]))
    assert detail.status_code == 200
    html = detail.content.decode()
    assert "timeline" in html and "validate" in html and "symbols_created" in html


def test_run_pipeline_from_the_admin_now_and_in_background(admin_client, reference_data, make_candles):
    make_candles([("THYAO", "BIST")], asset_class="STOCK_BIST")
    url = reverse("admin:etl_pipeline_run")
    form = admin_client.get(url)
    assert form.status_code == 200 and b'value="sync"' in form.content
    r = admin_client.post(url, {"steps": ["sync", "validate"], "max_minutes": "5"})
    run = PipelineRun.objects.get()
    assert r.status_code == 302 and r.url == reverse("admin:etl_pipelinerun_change", args=[run.pk])
    assert (run.status, run.trigger, run.max_seconds) == (RunStatus.SUCCEEDED, "admin", 300)
    assert MarketData.objects.filter(symbol__isnull=True).count() == 0
    with mock.patch("etl.queue.async_task"):
        r = admin_client.post(url, {"steps": ["sync"], "background": "on"})
    assert PipelineRun.objects.filter(status=RunStatus.QUEUED).count() == 1
    r = admin_client.post(url, {"steps": ["teleport"]}, follow=True)
    assert "unknown pipeline step" in r.content.decode().lower()


def test_admin_run_refused_while_another_runs(admin_client, reference_data, pipeline_locked):
    r = admin_client.post(reverse("admin:etl_pipeline_run"), {"steps": ["sync"]}, follow=True)
    assert "in progress" in r.content.decode().lower()
    assert not PipelineRun.objects.exists()


def test_cancel_and_run_again_actions(admin_client, reference_data):
    queued = PipelineRun.objects.create(steps_requested=["sync"], options={"batch_size": 10})
    url = reverse("admin:etl_pipelinerun_changelist")
    admin_client.post(url, {"action": "cancel_runs", ACTION_CHECKBOX_NAME: [queued.pk]})
    queued.refresh_from_db()
    assert queued.cancel_requested
    with mock.patch("etl.queue.async_task"):
        admin_client.post(url, {"action": "run_again", ACTION_CHECKBOX_NAME: [queued.pk]})
    again = PipelineRun.objects.exclude(pk=queued.pk).get()
    assert (again.steps_requested, again.options, again.trigger) == (["sync"], {"batch_size": 10}, "admin")


def test_sync_symbols_from_the_admin_dry_run_then_real(admin_client, reference_data, make_candles):
    make_candles([("ETHUSDT", "BINANCE"), ("AAPL", "NASDAQ")])
    url = reverse("admin:etl_symbols_sync")
    assert admin_client.get(url).status_code == 200
    dry = admin_client.post(url, {"dry_run": "on"})
    assert dry.status_code == 200
    assert "2 symbol(s) would be created" in dry.content.decode()
    assert Symbol.objects.count() == 0
    r = admin_client.post(url, {"venues": "BINANCE"})
    assert r.status_code == 302
    assert list(Symbol.objects.values_list("ticker", flat=True)) == ["ETHUSDT"]


def test_pipeline_admin_needs_permissions(client, make_user, reference_data):
    user = make_user(staff=True, perms=("etl.view_pipelinerun",))
    client.force_login(user)
    assert client.get(reverse("admin:etl_pipelinerun_changelist")).status_code == 200
    r = client.post(reverse("admin:etl_pipeline_run"), {"steps": ["sync"]})
    assert r.status_code == 302
    assert not PipelineRun.objects.exists()
    client.post(reverse("admin:etl_symbols_sync"), {})
    assert not Symbol.objects.exists()


def test_symbol_validate_and_clean_actions(admin_client, reference_data, make_candles):
    bist = Market.objects.get(code="BIST")
    canon = Symbol.objects.create(ticker="ASELS", market=bist)
    variant = Symbol.objects.create(ticker="Asels", market=bist)
    make_candles([("ASELS", "BIST")])
    MarketData.objects.update(symbol=variant)
    url = reverse("admin:etl_symbol_changelist")
    assert admin_client.get(url).status_code == 200
    r = admin_client.post(url, {"action": "validate_symbols", ACTION_CHECKBOX_NAME: [variant.pk]}, follow=True)
    assert "case_variant: asels@bist" in r.content.decode().lower()
    confirm = admin_client.post(url, {"action": "clean_symbols", ACTION_CHECKBOX_NAME: [canon.pk, variant.pk]})
    assert confirm.status_code == 200
    assert "Yes, clean them" in confirm.content.decode()
    assert not DataCorrection.objects.exists()
    done = admin_client.post(
        url, {"action": "clean_symbols", "confirm": "yes", ACTION_CHECKBOX_NAME: [canon.pk, variant.pk]}, follow=True
    )
    assert "recorded in the audit trail" in done.content.decode()
    variant.refresh_from_db()
    assert not variant.is_active
    assert MarketData.objects.filter(symbol=canon).count() == 3
    assert DataCorrection.objects.get().detail["merged_into"] == canon.pk
