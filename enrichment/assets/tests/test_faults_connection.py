"""An asset-enrichment run whose database session is cut in the middle (as a PostgreSQL
restart cuts it: the server ends the session when the run writes its first results):
the run is recorded failed with the cause, on a new session, never left `running`."""

from __future__ import annotations

import pytest
from django.db import OperationalError, connection

from enrichment.assets.services.enrich import assets_enrich
from enrichment.assets.services.enrich_options import EnrichOptions
from enrichment.models import AssetEnrichmentRun
from etl.models import AssetClass, Market, RunStatus, Symbol

pytestmark = pytest.mark.django_db(transaction=True)

CUT = """
CREATE FUNCTION faults_cut_session() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_terminate_backend(pg_backend_pid());
    RETURN NULL;
END $$;
CREATE TRIGGER faults_cut_session AFTER INSERT ON enrichment_asset_results
    FOR EACH STATEMENT EXECUTE FUNCTION faults_cut_session();
"""
UNDO = """
DROP TRIGGER IF EXISTS faults_cut_session ON enrichment_asset_results;
DROP FUNCTION IF EXISTS faults_cut_session();
"""


@pytest.fixture
def cut_at_the_first_results():
    with connection.cursor() as cur:
        cur.execute(UNDO + CUT)
    yield
    connection.close()
    with connection.cursor() as cur:
        cur.execute(UNDO)


def test_a_run_whose_session_is_cut_is_recorded_failed_with_the_cause(providers, cut_at_the_first_results, monkeypatch):
    Symbol.objects.create(
        ticker="THYAO", market=Market.objects.get(code="BIST"), asset_class=AssetClass.objects.get(code="STOCK_BIST")
    )
    monkeypatch.setattr("etl.recovery.time.sleep", lambda seconds: None)
    with pytest.raises(OperationalError):
        assets_enrich(options=EnrichOptions.from_dict({"sources": ["LOCAL"], "concurrency": 1}))
    run = AssetEnrichmentRun.objects.get()
    assert run.status == RunStatus.FAILED and run.finished_at is not None
    assert run.error == (
        "OperationalError: database connection lost (terminating connection due to administrator command)"
    )
