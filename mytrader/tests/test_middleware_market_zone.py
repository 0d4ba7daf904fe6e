"""The operator middleware reads a market from admin URLs: a value of non-ASCII digits
("¹", which str.isdigit() accepts and int() refuses) is not a market id (it was a 500)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "url",
    ["/admin/etl/marketclosure/?market__id__exact=¹", "/admin/etl/tradingsession/?market=¹"],
)
def test_a_market_filter_in_other_digits_is_no_crash(admin_client, reference_data, url):
    assert admin_client.get(url).status_code in (200, 302)
