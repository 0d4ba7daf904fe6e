"""Start an import from the admin and watch it reach 100 %."""

from __future__ import annotations

import pytest

from browser_tests.helpers import assert_no_console_errors, messages, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _int(text: str) -> int:
    return int(text.replace(",", "").strip())


def test_start_an_import_and_watch_it_reach_100_percent(logged_in, live_server, sample_folder, shot):
    from batchimport.models import ImportJob, RejectedRow
    from etl.models import MarketData

    page = logged_in
    page.goto(f"{live_server.url}/admin/batchimport/importjob/")
    page.click("text=Start an import")
    page.select_option("#id_market", "NASDAQ")
    page.fill("#id_folder", "sample/NASDAQ")
    shot(page, "import-start-form")
    page.click('input[type=submit][value="Start import"]')
    page.wait_for_load_state("load")
    queued = [m for m in messages(page) if m.startswith("Import job")]
    assert queued and queued[0].endswith("queued (2 files)."), messages(page)
    job = ImportJob.objects.get()
    assert job.market == "NASDAQ" and job.requested_by == "operator"

    # The list: its progress bar, read until 100 %.
    page.goto(f"{live_server.url}/admin/batchimport/importjob/")
    row = page.locator(f'#result_list tr:has(input.action-select[value="{job.pk}"])')

    def percent() -> int | None:
        value = int(row.locator("td.field-progress progress").get_attribute("value"))
        if value < 100:
            page.reload()
        return value if value == 100 else None

    wait_until(percent, timeout=20, interval=1, what=f"import job {job.pk} to reach 100 %")
    shot(page, "import-list-done")
    cell = lambda name: row.locator(f"td.field-{name}").inner_text()  # noqa: E731
    assert cell("status") == "Succeeded"
    assert cell("files_summary") == "2/2 (0 skipped, 0 failed)"
    read, inserted, rejected = _int(cell("rows_read")), _int(cell("rows_inserted")), _int(cell("rows_rejected"))
    job.refresh_from_db()
    # what the generator wrote for NASDAQ (2 tickers x 60 bars, plus its defective lines beside
    # the good ones), every row accounted for, and the table agrees
    assert read == sample_folder["rows_by_market"]["NASDAQ"]
    assert inserted == 2 * 60 and rejected == read - inserted
    assert read == inserted + rejected + job.rows_duplicates + job.rows_updated
    assert rejected > 0 and rejected == RejectedRow.objects.filter(job__in=[job, *job.children.all()]).count()
    assert inserted == MarketData.objects.filter(market="NASDAQ").count()

    # the job page shows the same counts
    page.click(f'#result_list a[href$="/batchimport/importjob/{job.pk}/change/"]')
    page.wait_for_load_state("load")
    assert page.locator(".field-rows_read .readonly").inner_text().replace(",", "") == str(read)
    shot(page, "import-job-page")
    assert_no_console_errors(page)
