"""Asset metadata quality: a 0-100 score from three dimensions (docs/providers.md).

Pure functions, no ORM: completeness of the fields a symbol of its kind should
have, freshness of the last successful enrichment, and agreement between the
sources that reported the same field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlparse

WEIGHTS = {"completeness": 0.5, "freshness": 0.2, "agreement": 0.3}
# Agreement when no field was reported by two sources: unknown, scored neutral.
NEUTRAL_AGREEMENT = 0.5
MARKET_CAP_TOLERANCE = 0.10

# What a symbol of each kind should carry once enriched (Symbol field names).
EXPECTED_FIELDS = {
    "crypto": ("name", "description", "website", "category", "quote_currency"),
    "stock": ("name", "sector", "industry", "country", "quote_currency", "market_cap", "description", "website"),
    "fx": ("name", "quote_currency"),
    "other": ("name", "quote_currency", "country"),
}


@dataclass(frozen=True, slots=True)
class QualityScore:
    score: int
    completeness: float
    freshness: float
    agreement: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "completeness": round(self.completeness, 3),
            "freshness": round(self.freshness, 3),
            "agreement": None if self.agreement is None else round(self.agreement, 3),
        }


def completeness(values: dict[str, Any], kind: str) -> float:
    expected = EXPECTED_FIELDS.get(kind, EXPECTED_FIELDS["other"])
    filled = sum(1 for f in expected if values.get(f) not in (None, ""))
    return filled / len(expected)


def freshness(enriched_at: datetime | None, *, now: datetime, stale_days: int) -> float:
    """1.0 up to `stale_days` old, then falling linearly to 0 at four times that; never enriched is 0."""
    if enriched_at is None:
        return 0.0
    age_days = (now - enriched_at).total_seconds() / 86400
    if age_days <= stale_days:
        return 1.0
    return max(0.0, 1.0 - (age_days - stale_days) / (3 * stale_days))


def _norm_text(value: Any) -> str:
    text = re.sub(r"[^a-z0-9]+", " ", str(value).casefold()).strip()
    for suffix in (" inc", " corp", " corporation", " co", " ltd", " plc", " a s", " a o", " sa", " ag"):
        text = text.removesuffix(suffix)
    return text.strip()


def values_agree(field: str, a: Any, b: Any) -> bool:
    if field == "market_cap":
        a, b = Decimal(a), Decimal(b)
        biggest = max(a, b)
        return biggest == 0 or abs(a - b) / biggest <= Decimal(str(MARKET_CAP_TOLERANCE))
    if field == "website":
        host = lambda u: (urlparse(u if "//" in u else f"//{u}").hostname or "").removeprefix("www.")  # noqa: E731
        return host(a) == host(b)
    na, nb = _norm_text(a), _norm_text(b)
    return na == nb or (bool(na) and bool(nb) and (na in nb or nb in na))


def agreement(reports: list[dict[str, Any]]) -> float | None:
    """Share of fields, among those reported by two or more sources, on which all of them agree."""
    fields: dict[str, list[Any]] = {}
    for report in reports:
        for name, value in report.items():
            fields.setdefault(name, []).append(value)
    shared = {name: values for name, values in fields.items() if len(values) >= 2}
    if not shared:
        return None
    agreeing = sum(1 for name, values in shared.items() if all(values_agree(name, values[0], v) for v in values[1:]))
    return agreeing / len(shared)


def quality_score(
    *,
    values: dict[str, Any],
    kind: str,
    enriched_at: datetime | None,
    reports: list[dict[str, Any]],
    now: datetime,
    stale_days: int,
) -> QualityScore:
    c = completeness(values, kind)
    f = freshness(enriched_at, now=now, stale_days=stale_days)
    a = agreement(reports)
    total = (
        WEIGHTS["completeness"] * c
        + WEIGHTS["freshness"] * f
        + WEIGHTS["agreement"] * (NEUTRAL_AGREEMENT if a is None else a)
    )
    return QualityScore(score=round(100 * total), completeness=c, freshness=f, agreement=a)
