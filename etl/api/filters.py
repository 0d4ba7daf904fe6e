from __future__ import annotations

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField

from etl.errors import DomainError
from etl.models import MarketData, Symbol
from etl.timeparse import moment_utc


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 moment, in UTC before it reaches a query: PostgreSQL refuses an offset such as +22:22,
    and a moment at the calendar's edge can overflow (schemathesis found both as a 500)."""

    def to_python(self, value):
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            return moment_utc(moment, field=self.label or "date-time")
        except DomainError as exc:
            raise forms.ValidationError(exc.message) from None


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class SymbolFilter(django_filters.FilterSet):
    ticker = django_filters.CharFilter(lookup_expr="iexact")
    market = django_filters.CharFilter(field_name="market__code", lookup_expr="iexact")
    asset_class = django_filters.CharFilter(field_name="asset_class__code", lookup_expr="iexact")

    class Meta:
        model = Symbol
        fields = ["ticker", "market", "asset_class", "is_active", "source"]


class MarketDataFilter(django_filters.FilterSet):
    ticker = django_filters.CharFilter()
    market = django_filters.CharFilter()
    asset_class = django_filters.CharFilter()
    timeframe = django_filters.CharFilter()
    start = UtcIsoDateTimeFilter(field_name="ts", lookup_expr="gte", label="ts >= start (ISO 8601)")
    end = UtcIsoDateTimeFilter(field_name="ts", lookup_expr="lt", label="ts < end (ISO 8601)")

    class Meta:
        model = MarketData
        fields = ["ticker", "market", "asset_class", "timeframe", "symbol"]
