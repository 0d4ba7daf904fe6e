"""A Python list as ONE PostgreSQL array literal (`{1,2,NULL}`, `{"a","b\\"c"}`), for the
`unnest(%s::bigint[], …)` parameters of set-based statements over hundreds of rows.

psycopg adapts a list element by element in Python (its array dumper: about 1.4 µs an
element); the import passes some 60 elements a file (its files' rows, counts, fingerprints)
and, at 0.2 ms a file, that was a third of the budget. Joined here as one string it costs
about 0.3 µs an element and travels as one text parameter that PostgreSQL parses (cast by
the statement's own `::type[]`). Values: None, bool, int, float, str and anything whose
str() PostgreSQL reads back as the element type (datetime: isoformat with its offset).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime


def _element(value) -> str:
    if value is None:
        return "NULL"
    if value is True or value is False:
        return "t" if value else "f"
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return repr(value)  # nan and inf: PostgreSQL reads NaN / Infinity case-insensitively
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def array_literal(values: Iterable) -> str:
    """The values as a one-dimensional array literal; cast it in the statement (`%s::text[]`)."""
    return "{" + ",".join(map(_element, values)) + "}"


def int_array(values: Iterable[int]) -> str:
    """The faster form for ids and counts (no None)."""
    return "{" + ",".join(map(str, values)) + "}"


def text_array(values: Iterable[str | None]) -> str:
    """The faster form for text (None for NULL): no test of each value's type."""
    quoted = ("NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "{" + ",".join(quoted) + "}"
