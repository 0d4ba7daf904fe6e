from __future__ import annotations

import pytest
from django.db import connection

from etl import services
from etl.errors import DomainError
from etl.models import DataCorrection, Market, MarketData, Symbol, SymbolSource

pytestmark = pytest.mark.django_db


@pytest.fixture
def messy(reference_data, make_candles):
    bist = Market.objects.get(code="BIST")
    nasdaq = Market.objects.get(code="NASDAQ")
    canon = Symbol.objects.create(ticker="THYAO", market=bist, source=SymbolSource.MANUAL)
    lower = Symbol.objects.create(ticker="thyao", market=bist, source=SymbolSource.MANUAL)
    spaced = Symbol.objects.create(ticker=" GARAN ", market=bist, source=SymbolSource.MANUAL)
    idle = Symbol.objects.create(ticker="MSFT", market=nasdaq, source=SymbolSource.MANUAL)
    make_candles([("THYAO", "BIST"), ("GARAN", "BIST")], bars=2)
    MarketData.objects.filter(ticker="THYAO").update(symbol=lower)
    MarketData.objects.filter(ticker="GARAN").update(symbol=spaced)
    make_candles([("AKBNK", "BIST")], bars=3)  # never synced
    return {"canon": canon, "lower": lower, "spaced": spaced, "idle": idle}


def test_validate_reports_and_changes_nothing(messy):
    result = services.symbols_validate_cleanup()
    assert result.counts == {
        "whitespace": 1,
        "case_variant": 1,
        "inactive_market": 0,
        "active_without_data": 2,  # THYAO (its candles sit on the variant) and MSFT
        "unlinked_candles": 1,
    }
    assert not result.ok
    assert result.corrections_recorded == 0
    assert DataCorrection.objects.count() == 0
    assert Symbol.objects.get(pk=messy["spaced"].pk).ticker == " GARAN "


def test_clean_merges_variants_trims_links_and_records_every_fix(messy):
    result = services.symbols_validate_cleanup(fix=True, requested_by="alice")
    assert result.fixed["case_variant"] == 1
    assert result.fixed["whitespace"] == 1
    assert result.fixed["unlinked_candles"] == 1
    assert result.fixed["active_without_data"] == 0  # only when asked by name
    lower = Symbol.objects.get(pk=messy["lower"].pk)
    assert not lower.is_active
    assert MarketData.objects.filter(ticker="THYAO", symbol=messy["canon"]).count() == 2
    assert Symbol.objects.get(pk=messy["spaced"].pk).ticker == "GARAN"
    assert MarketData.objects.filter(symbol__isnull=True).count() == 0
    audit = DataCorrection.objects.filter(run_ref=result.run_ref)
    assert {(a.field, a.ticker) for a in audit} == {
        ("symbol_id", "THYAO"),
        ("ticker", "GARAN"),
        ("symbol_id", ""),
    }
    merge = audit.get(field="symbol_id", ticker="THYAO")
    assert (merge.row_count, merge.created_by, merge.kind) == (2, "alice", "symbol_cleanup")
    assert merge.detail["merged_into"] == messy["canon"].pk

    again = services.symbols_validate_cleanup(fix=True)
    assert again.corrections_recorded == 0
    assert again.counts["case_variant"] == again.counts["whitespace"] == again.counts["unlinked_candles"] == 0


def test_inactive_market_and_no_data_fixes(messy):
    Market.objects.filter(code="NASDAQ").update(is_active=False)
    result = services.symbols_validate_cleanup(fix=True, fixes=["inactive_market", "active_without_data"])
    assert result.fixed["inactive_market"] == 1
    assert not Symbol.objects.get(pk=messy["idle"].pk).is_active
    assert result.fixed["whitespace"] == 0
    assert DataCorrection.objects.filter(field="is_active").count() == result.corrections_recorded


def test_scope_limits_checks_to_selected_symbols(messy):
    result = services.symbols_validate_cleanup(symbol_ids=[messy["idle"].pk])
    assert [i.code for i in result.issues] == ["active_without_data"]


def test_unknown_fix_is_refused(messy):
    with pytest.raises(DomainError, match="unknown fix"):
        services.symbols_validate_cleanup(fix=True, fixes=["nope"])


def test_scoped_clean_takes_in_every_variant_of_the_selected_ticker(messy):
    result = services.symbols_validate_cleanup(fix=True, symbol_ids=[messy["lower"].pk])
    assert result.fixed["case_variant"] == 1
    assert not Symbol.objects.get(pk=messy["lower"].pk).is_active
    assert Symbol.objects.get(pk=messy["canon"].pk).is_active
    assert result.counts["whitespace"] == 0  # GARAN was not selected


def test_a_failed_audit_write_undoes_the_clean_up(messy):
    """The audit rows are written in the clean-up's own transaction: when the audit
    table refuses them, the symbols are left as they were and nothing is recorded."""
    with connection.cursor() as cur:
        cur.execute(
            "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'audit table refuses writes'; END $$"
        )
        cur.execute("CREATE TRIGGER refuse_audit BEFORE INSERT ON data_corrections EXECUTE FUNCTION refuse_audit()")
    with pytest.raises(Exception, match="audit table refuses writes"):
        services.symbols_validate_cleanup(fix=True, fixes=["whitespace", "case_variant"], requested_by="alice")
    assert Symbol.objects.get(pk=messy["spaced"].pk).ticker == " GARAN "
    assert Symbol.objects.get(pk=messy["lower"].pk).is_active
    assert MarketData.objects.filter(ticker="THYAO", symbol=messy["lower"]).count() == 2
    assert DataCorrection.objects.count() == 0
