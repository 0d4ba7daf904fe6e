"""Operators read the console in their own language and time zone."""

from __future__ import annotations

import gettext
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.apps import apps

from mytrader.accounts.models import OperatorPreference

pytestmark = pytest.mark.django_db
LOCALE = Path(__file__).resolve().parents[2] / "locale"
MORNING_UTC = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
def pipeline_run():
    return apps.get_model("etl", "PipelineRun").objects.create(status="succeeded", started_at=MORNING_UTC)


def _operator(client, make_user, *, language: str = "", time_zone: str = ""):
    user = make_user(superuser=True)
    OperatorPreference.objects.create(user=user, language=language, time_zone=time_zone)
    client.force_login(user)
    return user


def test_an_operator_with_turkish_and_istanbul_sees_the_admin_in_turkish_at_plus_three(client, make_user, pipeline_run):
    user = make_user(superuser=True)
    OperatorPreference.objects.create(user=user, language="tr", time_zone="Europe/Istanbul")
    login = client.post(
        "/admin/login/", {"username": user.username, "password": "pw-for-tests-only", "next": "/admin/"}
    )
    assert login.status_code == 302
    page = client.get("/admin/etl/pipelinerun/").content.decode()
    assert "MyTrader Veri Bütünlüğü" in page  # our own catalogue
    assert "Oturumu kapat" in page  # Django's Turkish ("Log out")
    assert "Saatler Europe/Istanbul (UTC+0300)" in page
    assert "12:30" in page  # 09:30 UTC
    assert '<html lang="tr"' in page


def test_without_a_preference_the_admin_follows_the_browser_and_shows_utc(client, make_user, pipeline_run):
    client.force_login(make_user(superuser=True))
    english = client.get("/admin/etl/pipelinerun/").content.decode()
    assert "MyTrader Data Integrity" in english
    assert "Times in UTC (UTC+0000)" in english
    assert "9:30 a.m." in english
    turkish = client.get("/admin/", HTTP_ACCEPT_LANGUAGE="tr").content.decode()
    assert "Operasyon konsolu" in turkish


def test_a_markets_pages_default_to_its_zone(client, make_user, reference_data):
    Market = apps.get_model("etl", "Market")
    bist = Market.objects.get(code="BIST")
    _operator(client, make_user)  # no zone chosen
    assert "Times in Europe/Istanbul" in client.get(f"/admin/etl/market/{bist.pk}/change/").content.decode()
    trading_sessions = client.get("/admin/etl/tradingsession/", {"market__id__exact": bist.pk}).content.decode()
    assert "Times in Europe/Istanbul" in trading_sessions
    assert "Times in UTC" in client.get("/admin/etl/pipelinerun/").content.decode()


def test_a_chosen_zone_wins_over_the_markets(client, make_user, reference_data):
    bist = apps.get_model("etl", "Market").objects.get(code="BIST")
    _operator(client, make_user, time_zone="America/New_York")
    assert "Times in America/New_York" in client.get(f"/admin/etl/market/{bist.pk}/change/").content.decode()


def test_an_unknown_market_filter_is_not_an_error(client, make_user):
    _operator(client, make_user)
    response = client.get("/admin/etl/tradingsession/", {"market__id__exact": "999999"})
    assert response.status_code in (200, 302)
    assert client.get("/admin/etl/symbol/", {"market": "NOPE" * 40}).status_code in (200, 302)


def test_an_operator_edits_only_their_own_preferences(client, make_user):
    operator = make_user(staff=True)
    other = make_user(staff=True)
    theirs = OperatorPreference.objects.create(user=other, time_zone="UTC")
    client.force_login(operator)
    response = client.get("/admin/accounts/operatorpreference/")
    mine = OperatorPreference.objects.get(user=operator)
    assert response.status_code == 302
    assert response.url == f"/admin/accounts/operatorpreference/{mine.pk}/change/"
    saved = client.post(response.url, {"language": "tr", "time_zone": "Europe/Istanbul"})
    assert saved.status_code == 302
    mine.refresh_from_db()
    assert (mine.language, mine.time_zone) == ("tr", "Europe/Istanbul")
    assert client.get(f"/admin/accounts/operatorpreference/{theirs.pk}/change/").status_code in (302, 403)


def test_a_time_zone_that_is_not_iana_is_refused_with_a_message(client, make_user):
    operator = make_user(staff=True)
    mine = OperatorPreference.objects.create(user=operator)
    client.force_login(operator)
    response = client.post(f"/admin/accounts/operatorpreference/{mine.pk}/change/", {"time_zone": "Mars/Olympus"})
    assert response.status_code == 200
    assert "Mars/Olympus is not an IANA time zone." in response.content.decode()


def _po_entries(path: Path) -> dict[str, str]:
    entries = {}
    for block in path.read_text().split("\n\n"):
        msgid = re.search(r'^msgid ((?:".*"\n?)+)', block, re.M)
        msgstr = re.search(r'^msgstr ((?:".*"\n?)+)', block, re.M)
        if msgid and msgstr:
            join = lambda quoted: "".join(re.findall(r'"(.*)"', quoted)).replace('\\"', '"')  # noqa: E731
            entries[join(msgid.group(1))] = join(msgstr.group(1))
    entries.pop("", None)
    return entries


def test_the_turkish_catalogue_is_complete_and_compiled():
    po = _po_entries(LOCALE / "tr" / "LC_MESSAGES" / "django.po")
    assert po, "no entries read"
    assert not [msgid for msgid, text in po.items() if not text], "untranslated strings"
    with open(LOCALE / "tr" / "LC_MESSAGES" / "django.mo", "rb") as compiled:
        catalogue = gettext.GNUTranslations(compiled)
    stale = [msgid for msgid, text in po.items() if catalogue.gettext(msgid) != text]
    assert not stale, f"django.mo is older than django.po (run `make messages`): {stale}"
