from __future__ import annotations

import django_filters

from etl.models import MarketData, Symbol


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
    start = django_filters.IsoDateTimeFilter(field_name="ts", lookup_expr="gte", label="ts >= start (ISO 8601)")
    end = django_filters.IsoDateTimeFilter(field_name="ts", lookup_expr="lt", label="ts < end (ISO 8601)")

    class Meta:
        model = MarketData
        fields = ["ticker", "market", "asset_class", "timeframe", "symbol"]
