"""A correction from the admin: analysis, preview, execute, and rollback through its confirmation page."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import F

from browser_tests.helpers import assert_no_console_errors, messages, run_admin_action

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def imported(sample_folder, data_root) -> dict[int, str | None]:
    """The sample imported and synced, its stock candles then given the folder's word as asset
    class ("BIST", "NASDAQ", "NYSE"), as the old importer stored them: mismatching the symbols'
    STOCK_* classes ("CRYPTO" already right). The import links symbols and classes at write,
    so it has nothing to correct by itself. Returns each candle's asset class before any
    correction."""
    from etl.models import MarketData

    call_command(
        "run_pipeline",
        "--steps",
        "import",
        "sync",
        "--path",
        str(data_root / "sample"),
        "--json",
        stdout=StringIO(),
        stderr=StringIO(),
    )
    MarketData.objects.filter(market__in=["BIST", "NASDAQ", "NYSE"]).update(asset_class=F("market"))
    before = dict(MarketData.objects.values_list("id", "asset_class"))
    assert len(before) > 400 and set(before.values()) == {"BIST", "CRYPTO", "NASDAQ", "NYSE"}
    assert not MarketData.objects.filter(symbol__isnull=True).exists()
    return before


def test_correction_preview_execute_and_rollback(logged_in, live_server, imported, shot):
    from corrections.models import CorrectionRun, Phase
    from etl.models import MarketData

    mismatched = MarketData.objects.exclude(asset_class=F("symbol__asset_class__code"))
    to_change = mismatched.count()  # BIST, NASDAQ, NYSE: 2 tickers each
    assert 0 < to_change < len(imported)
    page = logged_in
    changelist = f"{live_server.url}/admin/corrections/correctionrun/"

    # New analysis, scope: NULL, empty and mismatched
    page.goto(changelist)
    page.click("text=New analysis")
    page.check('input[name="scope"][value="all"]')
    page.click('input[type=submit][value="Analyze"]')
    page.wait_for_load_state("load")
    run = CorrectionRun.objects.get()
    assert f"Correction {run.pk} analyzed." in messages(page)
    assert run.phase == Phase.ANALYZED and run.overwrite_mismatched
    shot(page, "correction-analysis")

    # Preview
    page.goto(changelist)
    run_admin_action(page, object_pk=run.pk, action="preview_runs")
    expected = f"Correction {run.pk}: {to_change} candles would change in 6 groups."
    assert expected in messages(page), messages(page)
    page.goto(f"{changelist}{run.pk}/change/")
    assert f"{to_change} candles in 6 groups" in page.locator(".field-preview_summary").inner_text()
    shot(page, "correction-preview")

    # Execute (queued; the queue runs in the live server's thread here)
    page.goto(changelist)
    run_admin_action(page, object_pk=run.pk, action="execute_runs")
    assert f"Correction {run.pk}: queued." in messages(page), messages(page)
    run.refresh_from_db()
    assert run.phase == Phase.EXECUTED and run.rows_updated == to_change
    corrected = dict(MarketData.objects.values_list("id", "asset_class"))
    assert set(corrected.values()) == {"STOCK_BIST", "CRYPTO", "STOCK_NASDAQ", "STOCK_NYSE"}
    assert not mismatched.exists()
    page.reload()
    shot(page, "correction-executed")

    # Roll back: the confirmation page, which refuses to go on without a reason
    run_admin_action(page, object_pk=run.pk, action="rollback_runs")
    assert page.locator("h1").inner_text() == "Are you sure?"
    assert f"{to_change} candles will be restored" in page.locator("#content").inner_text()
    shot(page, "correction-rollback-confirmation")
    page.click('input[type=submit][value="Yes, roll back"]')  # empty reason: the browser keeps us here
    assert page.locator("#id_reason:invalid").count() == 1
    assert CorrectionRun.objects.get(pk=run.pk).phase == Phase.EXECUTED
    page.fill("#id_reason", "browser test: undo the correction")
    page.click('input[type=submit][value="Yes, roll back"]')
    page.wait_for_load_state("load")
    assert any(m.startswith(f"Correction {run.pk} rolled back: {to_change} candles restored") for m in messages(page))

    run.refresh_from_db()
    assert run.phase == Phase.ROLLED_BACK
    assert run.rollback_reason == "browser test: undo the correction" and run.rolled_back_by == "operator"
    assert dict(MarketData.objects.values_list("id", "asset_class")) == imported
    row = page.locator(f'#result_list tr:has(input.action-select[value="{run.pk}"])')
    assert row.locator("td.field-phase").inner_text().lower() == "rolled back"
    shot(page, "correction-rolled-back")
    assert_no_console_errors(page)
