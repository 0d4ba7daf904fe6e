from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_login_form_rejects_a_wrong_password(page, live_server, operator):
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "wrong")
    page.click("input[type=submit]")
    assert "Please enter the correct username and password" in page.content()


def test_dashboard_renders_without_console_errors(logged_in, live_server, shot):
    page = logged_in
    assert "MyTrader Data Integrity" in page.title()
    shot(page, "dashboard-empty")
    assert page.console_errors == []


def test_api_docs_render_offline(logged_in, live_server, shot):
    page = logged_in
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .opblock", timeout=15_000)
    shot(page, "api-docs")
    assert page.console_errors == []


def test_site_serves_a_favicon(page, live_server):
    response = page.goto(f"{live_server.url}/favicon.ico")
    assert response.status == 200
