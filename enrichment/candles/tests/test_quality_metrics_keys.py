"""data_quality_metrics keeps one btree, its natural key (migration enrichment/0014): ids still
unique, a metric still found by id, upserts still by the key."""

from __future__ import annotations

import pytest
from django.db import connection
from django.urls import reverse

from enrichment.candles.services.feature_runs import features_run
from enrichment.candles.tests.feature_fixtures import insert_market_data, make_symbol, random_candles
from enrichment.models import DataQualityMetric

pytestmark = pytest.mark.django_db


def test_the_metrics_go_into_one_btree_the_natural_key():
    with connection.cursor() as cur:
        cur.execute(
            "SELECT a.amname, pg_get_indexdef(x.indexrelid), x.indisprimary FROM pg_index x"
            " JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am a ON a.oid = i.relam"
            " WHERE x.indrelid = 'data_quality_metrics'::regclass ORDER BY a.amname"
        )
        (brin, brin_def, _), (btree, btree_def, primary) = cur.fetchall()
    assert (brin, btree, primary) == ("brin", "btree", True)
    assert "(id)" in brin_def and "(symbol_id, timeframe, day)" in btree_def


def test_metrics_keep_unique_ids_found_by_the_admin_and_are_upserted_by_their_key(admin_client):
    symbol = make_symbol("KEYS", "BINANCE", "CRYPTO")
    data = random_candles(300, seed=4)
    insert_market_data(symbol, data, rows=slice(0, 200))
    features_run()
    insert_market_data(symbol, data, rows=slice(200, None))
    features_run()  # rewrites the last day's metric row and adds the next days'
    metrics = DataQualityMetric.objects.filter(symbol=symbol)
    ids = list(metrics.values_list("pk", flat=True))
    assert len(ids) == len(set(ids)) == metrics.values("day").distinct().count() > 1
    one = metrics.order_by("-day").first()
    page = admin_client.get(reverse("admin:enrichment_dataqualitymetric_change", args=[one.pk]))
    assert page.status_code == 200 and str(one.day.year) in page.content.decode()
