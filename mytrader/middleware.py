"""Each operator reads the console in their own language and time zone."""

from __future__ import annotations

import re
import zoneinfo

from django.apps import apps
from django.http import HttpRequest, HttpResponse
from django.utils import timezone, translation

from mytrader.accounts.models import operator_preference_of

# A market's own pages: its change page, and lists filtered to one market.
MARKET_PAGE = re.compile(r"^/admin/etl/market/(?P<pk>[0-9]+)/")


def _number(value: str) -> bool:
    """ASCII digits only: "¹" passes isdigit() and then fails as a primary key (a 500)."""
    return value.isascii() and value.isdigit()


def _market_zone(request: HttpRequest) -> str:
    """The IANA zone of the market this page is about, or "" when it is about none."""
    Market = apps.get_model("etl", "Market")  # etl is an app; mytrader only wires it
    page = MARKET_PAGE.match(request.path)
    if page:
        lookup = {"pk": page["pk"]}
    elif _number(request.GET.get("market__id__exact", "")):
        lookup = {"pk": request.GET["market__id__exact"]}
    elif request.GET.get("market__code__exact") or request.GET.get("market"):
        value = request.GET.get("market__code__exact") or request.GET["market"]
        lookup = {"pk": value} if _number(value) else {"code": value}
    else:
        return ""
    return Market.objects.filter(**lookup).values_list("timezone", flat=True).first() or ""


class OperatorPreferenceMiddleware:
    """After the session and authentication middleware, and after LocaleMiddleware
    (which picks the browser's language): the signed-in operator's own language
    and time zone win; without a chosen zone a market's pages show its zone."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        preference = operator_preference_of(getattr(request, "user", None))
        if preference is not None and preference.language:
            translation.activate(preference.language)
            request.LANGUAGE_CODE = translation.get_language()
        zone = (preference.time_zone if preference is not None else "") or (
            _market_zone(request) if request.path.startswith("/admin/") else ""
        )
        if zone:
            try:
                timezone.activate(zoneinfo.ZoneInfo(zone))
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                zone = ""  # a zone removed from the tz database since it was saved: fall back to UTC
        try:
            return self.get_response(request)
        finally:
            if zone:
                timezone.deactivate()
