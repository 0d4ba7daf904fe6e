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


def _po_entries(path: Path) -> dict[tuple[str, str], str]:
    """(context, msgid) -> msgstr; the context is "" for an entry without one."""
    entries = {}
    for block in path.read_text().split("\n\n"):
        msgctxt = re.search(r'^msgctxt ((?:".*"\n?)+)', block, re.M)
        msgid = re.search(r'^msgid ((?:".*"\n?)+)', block, re.M)
        msgstr = re.search(r'^msgstr ((?:".*"\n?)+)', block, re.M)
        if msgid and msgstr:
            join = lambda quoted: "".join(re.findall(r'"(.*)"', quoted)).replace('\\"', '"')  # noqa: E731
            context = join(msgctxt.group(1)) if msgctxt else ""
            entries[context, join(msgid.group(1))] = join(msgstr.group(1))
    entries.pop(("", ""), None)
    return entries


def test_the_turkish_catalogue_is_complete_and_compiled():
    po = _po_entries(LOCALE / "tr" / "LC_MESSAGES" / "django.po")
    assert po, "no entries read"
    assert not [key for key, text in po.items() if not text], "untranslated strings"
    with open(LOCALE / "tr" / "LC_MESSAGES" / "django.mo", "rb") as compiled:
        catalogue = gettext.GNUTranslations(compiled)
    compiled_text = lambda context, msgid: (  # noqa: E731
        catalogue.pgettext(context, msgid) if context else catalogue.gettext(msgid)
    )
    stale = [key for key, text in po.items() if compiled_text(*key) != text]
    assert not stale, f"django.mo is older than django.po (run `make messages`): {stale}"


def test_the_turkish_catalogue_has_no_fuzzy_entries():
    text = (LOCALE / "tr" / "LC_MESSAGES" / "django.po").read_text()
    assert "#, fuzzy" not in text and ", fuzzy" not in text, "fuzzy entries: review them and drop the flag"


# ---------------------------------------------------------------- every app's admin in Turkish


@pytest.fixture
def turkish_superuser(client, make_user):
    return _operator(client, make_user, language="tr")


def _messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.mark.parametrize(
    ("page", "descriptions"),
    [
        (
            "/admin/etl/pipelinerun/",
            ["Seçili çalıştırmaları iptal et", "Aynı adımlar ve seçeneklerle yeniden çalıştır"],
        ),
        ("/admin/etl/symbol/", ["Seçili sembolleri doğrula", "Seçili sembolleri temizle"]),
        ("/admin/etl/market/", ["Referans verisini doğrula"]),
        ("/admin/batchimport/importjob/", ["Seçili içe aktarmaları iptal et", "başarısız dosyalarını yeniden dene"]),
        ("/admin/batchimport/rejectedrow/", ["Seçili satırları CSV olarak indir"]),
        ("/admin/corrections/correctionrun/", ["değişikliklerini önizle", "Seçili çalıştırmaları geri al…"]),
        ("/admin/enrichment/symbolforenrichment/", ["Seçili sembolleri zenginleştir (arka planda)"]),
        ("/admin/enrichment/providerstatus/", ["Devreyi sıfırla (kapat)"]),
    ],
)
def test_each_apps_actions_read_in_turkish(client, turkish_superuser, page, descriptions):
    # The context's action form: the page shows it only once the list has rows.
    choices = " / ".join(str(label) for _, label in client.get(page).context["action_form"].fields["action"].choices)
    for description in descriptions:
        assert description in choices, (page, description)


def test_the_pipeline_admin_speaks_turkish(client, turkish_superuser, pipeline_run):
    html = client.get("/admin/etl/pipelinerun/").content.decode()
    assert "İşlem hattını çalıştır" in html and "Sembolleri eşitle" in html
    response = client.post(
        "/admin/etl/pipelinerun/", {"action": "cancel_runs", "_selected_action": [pipeline_run.pk]}, follow=True
    )
    assert "0 çalıştırmadan durması istendi." in _messages(response)


def test_the_reference_data_check_reports_in_turkish(client, turkish_superuser, reference_data):
    markets = list(apps.get_model("etl", "Market").objects.values_list("pk", flat=True))
    response = client.post(
        "/admin/etl/market/", {"action": "validate_reference_data", "_selected_action": markets}, follow=True
    )
    assert "Referans verisi tutarlı." in _messages(response)


def test_the_import_admin_speaks_turkish(client, make_user):
    operator = make_user(staff=True, perms=("batchimport.view_importjob",))  # may watch imports, not start one
    OperatorPreference.objects.create(user=operator, language="tr")
    client.force_login(operator)
    assert "İçe aktarma başlat" in client.get("/admin/batchimport/importjob/").content.decode()
    response = client.get("/admin/batchimport/importjob/start/", follow=True)
    assert "'İçe aktarma başlatabilir' iznine ihtiyacınız var." in _messages(response)


def test_the_corrections_admin_speaks_turkish(client, turkish_superuser):
    assert "Yeni analiz" in client.get("/admin/corrections/correctionrun/").content.decode()
    form = client.get("/admin/corrections/correctionrun/analyze/").content.decode()
    assert "Yürütmenin değiştireceği mumlar" in form and "Analiz et" in form
    response = client.post("/admin/corrections/correctionrun/analyze/", {"batch_size": "many"})
    assert "Parti boyutu bir tam sayı olmalıdır." in _messages(response)


def test_the_enrichment_admin_speaks_turkish(client, turkish_superuser, reference_data):
    providers = list(apps.get_model("enrichment", "ProviderStatus").objects.values_list("pk", flat=True))
    response = client.post(
        "/admin/enrichment/providerstatus/", {"action": "reset_circuit", "_selected_action": providers}, follow=True
    )
    assert any(text.endswith("devre kapatıldı.") for text in _messages(response)), _messages(response)
    assert "Başarı (24 sa)" in response.content.decode()


def test_the_dashboard_speaks_turkish(client, turkish_superuser, pipeline_run):
    html = client.get("/admin/").content.decode()
    for title in ("Veri bütünlüğü", "Süren işler", "İşlem hattı çalıştırmaları", "Görev kuyruğu", "Veri sağlayıcılar"):
        assert title in html, title


def test_the_start_import_form_and_the_pipeline_steps_read_in_turkish():
    from django.utils import translation

    from batchimport.forms import MARKET_CHOICES, StartImportForm
    from etl.pipeline import registered_steps

    with translation.override("tr"):
        form = StartImportForm(data={})
        assert not form.is_valid()
        assert "DATA_ROOT altında bir klasör verin" in str(form.errors)
        assert str(MARKET_CHOICES[0][1]).startswith("Tüm piyasalar")
        descriptions = {step.name: str(step.description) for step in registered_steps()}
    assert descriptions["correct"].startswith("market_data.asset_class değerini")


# ---------------------------------------------------------------- refusals, status words, columns, panels, the API


def _placeholders(text: str) -> list[str]:
    return sorted(re.findall(r"%\(\w+\)[-#0 +]*\d*(?:\.\d+)?[sdifr]|\{[\w.]+\}", text))


def test_every_translation_keeps_the_placeholders_of_its_msgid():
    po = _po_entries(LOCALE / "tr" / "LC_MESSAGES" / "django.po")
    broken = [msgid for (_context, msgid), text in po.items() if _placeholders(msgid) != _placeholders(text)]
    assert not broken, f"placeholders differ between English and Turkish: {broken}"


@pytest.fixture
def never_executed_run():
    from corrections import services

    return services.correction_run_create(requested_by="alice")


def test_a_refused_rollback_reads_in_turkish(client, turkish_superuser, never_executed_run):
    changelist = "/admin/corrections/correctionrun/"
    selected = {"action": "rollback_runs", "_selected_action": [never_executed_run.pk]}
    confirmation = client.post(changelist, selected).content.decode()
    assert "Geri alınamaz: hiç yürütülmedi: geri alınacak bir şey yok." in confirmation
    response = client.post(changelist, {**selected, "post": "yes", "reason": "yanlış eşleme"}, follow=True)
    assert _messages(response) == [
        f"Düzeltme {never_executed_run.pk}: Düzeltme {never_executed_run.pk}: hiç yürütülmedi: "
        "geri alınacak bir şey yok."
    ]


def test_the_same_refusal_stays_english_for_an_english_operator(client, make_user, never_executed_run):
    _operator(client, make_user, language="en")
    response = client.post(
        "/admin/corrections/correctionrun/",
        {"action": "rollback_runs", "_selected_action": [never_executed_run.pk]},
        HTTP_ACCEPT_LANGUAGE="tr",  # the operator's own choice wins over the browser's
    )
    assert "Cannot be rolled back: never executed: there is nothing to roll back." in response.content.decode()


def test_status_and_choice_words_read_in_turkish(client, turkish_superuser, pipeline_run, never_executed_run):
    ImportJob = apps.get_model("batchimport", "ImportJob")
    ImportJob.objects.create(path="sample", market="BIST", status="dead_lettered", requested_by="ops")
    runs = client.get("/admin/etl/pipelinerun/").content.decode()
    assert ">başarılı</span>" in runs  # the outcome column
    assert "Veri bütünlüğü: dikkat gerekiyor" in runs  # the integrity verdict (no candles: attention)
    jobs = client.get("/admin/batchimport/importjob/").content.decode()
    assert "Teslim edilemedi" in jobs and "Tek piyasa" in jobs  # status and kind choices
    assert "Tüm piyasalar" in jobs  # the kind filter
    corrections = client.get("/admin/corrections/correctionrun/").content.decode()
    assert "analiz edildi" in corrections and "NULL veya boş (varsayılan)" in corrections  # phase and scope


def test_the_enrichment_columns_read_in_turkish(client, turkish_superuser, reference_data):
    Symbol = apps.get_model("etl", "Symbol")
    symbol = Symbol.objects.create(ticker="THYAO", market=apps.get_model("etl", "Market").objects.get(code="BIST"))
    apps.get_model("enrichment", "MarketDataV2").objects.create(
        symbol=symbol, timeframe="1d", ts=MORNING_UTC, open=1, high=2, low=0.5, close=1.5, volume=10, source="LOCAL"
    )
    apps.get_model("enrichment", "EnrichmentStatus").objects.create(symbol=symbol, timeframe="1d", state="pending")
    candles = client.get("/admin/enrichment/marketdatav2/").content.decode()
    for header in ("Mum zamanı", "Kapanış", "Hacim", "Kalite puanı", "İşaretler", "Revizyon"):
        assert f">{header}<" in candles, header
    status = client.get("/admin/enrichment/enrichmentstatus/").content.decode()
    assert "Özellikler bekliyor" in status and "grafik ve kalite" in status and ">Son hesaplanma<" in status
    assert "Tüm özellikleri yeniden hesapla (arka planda)" in status


def test_the_dashboard_panels_read_in_turkish(client, turkish_superuser, reference_data, pipeline_run):
    page = client.get("/admin/").content.decode()
    coverage = page[page.index('id="panel-enrichment_coverage"') :]
    coverage = coverage[: coverage.index("</section>")]
    assert "karşı para birimi %" in coverage and "piyasa değeri %" in coverage and "quote_currency" not in coverage
    providers = page[page.index('id="panel-providers"') :]
    providers = providers[: providers.index("</section>")]
    assert "erişilebilir" in providers and "devre dışı" in providers  # key-needing providers start disabled
    assert ">Kapalı<" in providers  # the circuit
    pipeline = page[page.index('id="panel-pipeline"') :]
    assert ">başarılı</td>" in pipeline[: pipeline.index("</section>")]


def test_an_api_refusal_follows_accept_language_and_keeps_its_code(api_client_for, never_executed_run):
    client = api_client_for(staff=True, perms=("corrections.rollback_correction",))
    body = {"run_id": never_executed_run.pk, "reason": "yanlış", "runAsync": False}
    url = "/api/etl/asset-class-correction/rollback"
    turkish = client.post(url, body, format="json", HTTP_ACCEPT_LANGUAGE="tr")
    english = client.post(url, body, format="json")
    assert turkish.status_code == english.status_code == 409
    assert turkish.json()["code"] == english.json()["code"] == "bad_phase"
    assert turkish.json()["detail"] == (
        f"Düzeltme {never_executed_run.pk}: hiç yürütülmedi: geri alınacak bir şey yok."
    )
    assert (
        english.json()["detail"]
        == f"Correction {never_executed_run.pk}: never executed: there is nothing to roll back."
    )
    assert turkish["Content-Language"] == "tr"


def test_a_validation_error_and_a_permission_refusal_read_in_turkish(api_client_for):
    staff = api_client_for(staff=True, perms=("etl.run_pipeline",))
    invalid = staff.post(
        "/api/etl/execute-full-pipeline", {"maxExecutionTime": "00:00:00"}, format="json", HTTP_ACCEPT_LANGUAGE="tr"
    )
    assert invalid.status_code == 400 and invalid.json()["code"] == "invalid"
    assert invalid.json()["detail"].startswith("Geçersiz girdi: ")
    denied = api_client_for().post("/api/etl/execute-full-pipeline", {}, format="json", HTTP_ACCEPT_LANGUAGE="tr")
    assert denied.status_code == 403
    assert denied.json()["detail"] == "Bu işlem, ilgili izne sahip bir personel kullanıcısı gerektirir."


def test_a_token_owner_who_chose_turkish_is_answered_in_turkish(api_anon, make_user, never_executed_run):
    from etl.services.tokens import api_token_issue

    owner = make_user(staff=True, perms=("corrections.rollback_correction",))
    OperatorPreference.objects.create(user=owner, language="tr")
    key = api_token_issue(username=owner.username, name="nightly").key
    response = api_anon.post(
        "/api/etl/asset-class-correction/rollback",
        {"run_id": never_executed_run.pk, "reason": "x", "runAsync": False},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert response.status_code == 409 and response.json()["code"] == "bad_phase"
    assert "hiç yürütülmedi" in response.json()["detail"]


def test_machine_values_stay_as_they_are_in_a_turkish_answer(api_client_for, reference_data):
    status = api_client_for().get("/api/etl/status", HTTP_ACCEPT_LANGUAGE="tr").json()
    assert status["status"] in ("healthy", "attention")


def test_the_input_guard_answers_in_the_language_asked_for(api_client_for):
    client = api_client_for()
    turkish = client.get("/api/etl/status", {"q": "a\x00b"}, HTTP_ACCEPT_LANGUAGE="tr")
    assert turkish.status_code == 400 and turkish.json()["code"] == "nul_byte"
    assert turkish.json()["detail"] == "q: NUL baytı içeriyor"
    # The guard runs before LocaleMiddleware: the language a Turkish request left on the thread must not leak.
    english = client.get("/api/etl/status", {"q": "a\x00b"})
    assert english.json()["detail"] == "q: contains a NUL byte"


def test_services_refuse_in_the_language_of_the_caller():
    from django.utils import translation

    from etl.errors import DomainError
    from etl.services.pipeline import pipeline_plan

    with translation.override("tr"), pytest.raises(DomainError) as refused:
        pipeline_plan(["nope"])
    assert refused.value.code == "unknown_step"
    assert refused.value.message.startswith("bilinmeyen işlem hattı adım(lar)ı ['nope']")


def test_a_symbols_inferred_reason_is_read_in_the_readers_language():
    from django.utils import translation

    from etl.inference import infer_symbol

    reason = infer_symbol("THYAO", "BIST").reason  # translated when read, not per inferred pair
    assert str(reason) == "Borsa Istanbul equity ticker"
    with translation.override("tr"):
        assert str(reason) == "Borsa İstanbul hisse kodu"
        assert str(infer_symbol("EURUSD", "FX").reason) == "döviz paritesi EUR/USD"
