"""After the pipeline: a symbol's candlestick chart draws, and the dashboard shows the data."""

from __future__ import annotations

import pytest

from browser_tests.helpers import assert_no_console_errors

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _drawn_paths(page, selector: str) -> int:
    """Paths under `selector` that draw something (a non-trivial `d`) and have a size on screen."""
    return page.eval_on_selector_all(
        selector,
        """els => els.filter(e => (e.getAttribute('d') || '').length > 10
                             && e.getBoundingClientRect().width > 0 && e.getBoundingClientRect().height > 0).length""",
    )


def test_symbol_chart_draws_candles_and_quality(logged_in, live_server, pipeline_data, shot):
    from enrichment.candles.models import EnrichmentStatus, MarketDataV2

    assert pipeline_data["status"] == "succeeded", pipeline_data
    status = EnrichmentStatus.objects.select_related("symbol").get(symbol__ticker="AAPL")
    bars = MarketDataV2.objects.filter(symbol=status.symbol, timeframe=status.timeframe).count()
    assert bars >= 55  # 60 generated, a defective row or two rejected

    page = logged_in
    page.goto(f"{live_server.url}/admin/enrichment/enrichmentstatus/?q=AAPL")
    page.click("text=chart & quality")
    page.wait_for_selector("#candles-chart .main-svg .trace", timeout=15_000)
    page.wait_for_selector("#quality-chart .main-svg .trace", timeout=15_000)
    assert page.locator("h1").inner_text().startswith("AAPL@NASDAQ")
    assert page.locator("#candles-chart").get_attribute("data-bars") == str(bars)

    # the candlestick trace: one box path per bar, each with a size on screen
    candles = _drawn_paths(page, "#candles-chart g.trace.boxes path.box")
    assert candles == bars, (candles, bars)
    # the feature overlays and RSI (lines), the volume bars, and the quality chart
    assert _drawn_paths(page, "#candles-chart g.trace.scatter path.js-line") >= 5
    assert _drawn_paths(page, "#candles-chart g.trace.bars path") >= bars // 2
    assert _drawn_paths(page, "#quality-chart g.trace path") >= 2
    assert f"last {bars} bars" in page.locator("#candles-chart .gtitle").text_content()

    # non-blank: the pixels where the candles are drawn are many colours, not the background's one
    # (a 400-px-wide slice: decoding the PNG in pure Python is slow)
    box = page.locator("#candles-chart g.trace.boxes").bounding_box()
    assert box and box["width"] > 300 and box["height"] > 100, box
    clip = {"x": box["x"], "y": box["y"], "width": 400, "height": box["height"]}
    assert _distinct_colours(page.screenshot(clip=clip)) > 20
    shot(page, "chart-AAPL")
    assert_no_console_errors(page)


def _distinct_colours(png: bytes) -> int:
    """Distinct pixel colours of an 8-bit RGB/RGBA, non-interlaced PNG (what Chromium
    writes), decoded with the standard library only."""
    import struct
    import zlib

    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(png):
        (length,), kind = struct.unpack(">I", png[pos : pos + 4]), png[pos + 4 : pos + 8]
        body = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour_type, _, _, interlace = header
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, header
    bpp = 3 if colour_type == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    previous, colours = bytearray(stride), set()
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, up_left = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else up_left)) & 0xFF
        colours.update(bytes(line[i : i + 3]) for i in range(0, stride, bpp))
        previous = line
    return len(colours)


def test_dashboard_shows_the_pipeline_data(logged_in, live_server, pipeline_data, shot):
    from etl.dashboard import registered_panels

    assert pipeline_data["status"] == "succeeded", pipeline_data
    page = logged_in
    page.goto(f"{live_server.url}/admin/")
    page.wait_for_load_state("networkidle")
    names = [p.name for p in registered_panels()]
    assert {"runs", "queue", "providers", "import_sla"} <= set(names)
    for name in names:
        panel = page.locator(f"#panel-{name}")
        assert panel.count() == 1, f"panel {name} missing"
        assert panel.locator(".errornote").count() == 0, panel.inner_text()
    text = {name: page.locator(f"#panel-{name}").inner_text() for name in names}

    # the run kinds of the last 24 h, the providers from the bootstrap, the import of every market
    last_24h = {
        r.split("\t")[0]: [int(n) for n in r.split("\t")[1:]]
        for r in page.locator("#panel-runs table:last-of-type tbody tr").all_inner_texts()
    }
    assert last_24h["pipeline runs"] == [1, 0] and last_24h["import files"] == [8, 0], last_24h
    assert last_24h["import jobs"][0] >= 1 and last_24h["feature runs"][1] == 0, last_24h
    assert "No providers" not in text["providers"] and "YAHOO_FINANCE" in text["providers"], text["providers"]
    sla_rows = page.locator("#panel-import_sla tbody tr").all_inner_texts()
    assert {r.split("\t")[0] for r in sla_rows} >= {"BIST", "CRYPTO", "NASDAQ", "NYSE"}, sla_rows
    charts = page.locator(".dash-chart[data-figure]")
    for i in range(charts.count()):
        assert charts.nth(i).locator(".main-svg").count() > 0, "a dashboard chart did not draw"
    shot(page, "dashboard")
    assert_no_console_errors(page)
