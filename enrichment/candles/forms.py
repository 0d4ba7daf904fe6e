"""Forms of the candle side's admin doors that are not a model's own form: creating backfills."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from enrichment.candles.local_source import MARKET_DATA_SOURCE
from enrichment.candles.services.series_refs import symbols_from_params, timeframe_parse
from enrichment.candles.source_registry import source_codes
from etl.errors import DomainError


def _words(text: str) -> list[str]:
    return [part.strip() for part in text.replace(",", " ").split() if part.strip()]


class BackfillCreateForm(forms.Form):
    """backfill_create.backfills_create's arguments, as POST /api/runs/backfills/ takes them."""

    symbols = forms.CharField(
        label=_("symbols"), max_length=2000, help_text=_('Tickers, "TICKER@MARKET" or ids, separated by commas')
    )
    timeframes = forms.CharField(label=_("timeframes"), max_length=200, initial="1d", help_text=_("e.g. 1h, 1d"))
    source = forms.ChoiceField(label=_("source"), initial=MARKET_DATA_SOURCE)
    start = forms.DateTimeField(label=_("from"), required=False, help_text=_("UTC; empty: the local candles' start"))
    end = forms.DateTimeField(
        label=_("to"), required=False, help_text=_("UTC, exclusive; empty: the local candles' end")
    )
    chunk_bars = forms.IntegerField(label=_("bars per chunk"), min_value=1, max_value=100_000, initial=1000)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["source"].choices = [(code, code) for code in source_codes()]

    def clean_symbols(self):
        try:
            return symbols_from_params(_words(self.cleaned_data["symbols"])[:100])
        except DomainError as exc:
            raise forms.ValidationError(exc.message) from None

    def clean_timeframes(self):
        timeframes = _words(self.cleaned_data["timeframes"])[:10]
        try:
            for timeframe in timeframes:
                timeframe_parse(timeframe)
        except DomainError as exc:
            raise forms.ValidationError(exc.message) from None
        return timeframes

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end") and data["start"] >= data["end"]:
            raise forms.ValidationError(_("'from' must be before 'to'."))
        return data
