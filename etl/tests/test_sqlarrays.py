"""etl.sqlarrays: a list passed as one array literal reads back as the same values."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import connection

from etl.sqlarrays import array_literal, int_array, text_array

pytestmark = pytest.mark.django_db

AWKWARD = ["", "NULL", "null", "a,b", '"quoted"', "back\\slash", "{braces}", " spaced ", "İstanbul/ŞEKER.csv", "t\tab"]


def _roundtrip(literal: str, cast: str) -> list:
    with connection.cursor() as cur:
        cur.execute(f"SELECT %s::{cast}[]", [literal])
        return cur.fetchone()[0]


def test_text_values_come_back_as_they_were():
    values = [*AWKWARD, None]
    assert _roundtrip(array_literal(values), "text") == values
    assert _roundtrip(text_array(values), "text") == values


def test_numbers_booleans_and_none_come_back():
    assert _roundtrip(array_literal([1, -2, None, 2**62]), "bigint") == [1, -2, None, 2**62]
    assert _roundtrip(array_literal([0.1, 1e300, -2.5, None]), "float8") == [0.1, 1e300, -2.5, None]
    assert _roundtrip(array_literal([True, False, None]), "bool") == [True, False, None]
    assert _roundtrip(int_array([3, 1, 2]), "bigint") == [3, 1, 2]
    assert _roundtrip(int_array([]), "bigint") == []


def test_aware_datetimes_keep_their_instant():
    stamps = [
        datetime(2025, 1, 2, tzinfo=UTC),
        datetime(2024, 6, 30, 9, 30, 5, 123456, tzinfo=timezone(timedelta(hours=3))),
    ]
    assert _roundtrip(array_literal([*stamps, None]), "timestamptz") == [*stamps, None]


def test_a_literal_in_an_unnest_pairs_rows_as_lists_did():
    with connection.cursor() as cur:
        cur.execute(
            "SELECT v.a, v.b FROM unnest(%s::text[], %s::bigint[]) AS v(a, b)",
            [array_literal(AWKWARD), int_array(range(len(AWKWARD)))],
        )
        assert cur.fetchall() == [(a, n) for n, a in enumerate(AWKWARD)]
