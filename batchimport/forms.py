"""The admin's start-import form."""

from __future__ import annotations

from django import forms
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from batchimport.markets import MARKETS, MAX_CONCURRENCY_LIMIT
from batchimport.models import MarketKey

MARKET_CHOICES = [
    ("", format_lazy(_("All markets (folder with {folders})"), folders=", ".join(s.folder + "/" for s in MARKETS))),
    *MarketKey.choices,
]


class StartImportForm(forms.Form):
    market = forms.ChoiceField(label=_("market"), choices=MARKET_CHOICES, required=False)
    folder = forms.CharField(
        label=_("folder"),
        required=False,
        help_text=_("A folder or file under DATA_ROOT (relative), e.g. sample or sample/BIST"),
    )
    upload = forms.FileField(
        label=_("upload"), required=False, help_text=_("…or upload one CSV file (a market is then required)")
    )
    batch_size = forms.IntegerField(
        label=_("batch size"),
        min_value=1,
        max_value=1_000_000,
        required=False,
        help_text=_("Rows per batch; empty: the market's import settings"),
    )
    workers = forms.IntegerField(
        label=_("workers"),
        min_value=1,
        max_value=MAX_CONCURRENCY_LIMIT,
        required=False,
        help_text=_("django-q2 worker tasks sharing the job, never more at once; empty: the market's import settings"),
    )
    overwrite = forms.BooleanField(
        label=_("overwrite"), required=False, help_text=_("Overwrite stored candles whose values differ")
    )

    def clean(self):
        data = super().clean()
        if not data.get("folder") and not data.get("upload"):
            raise forms.ValidationError(_("Give a folder under DATA_ROOT or upload a file."))
        if data.get("folder") and data.get("upload"):
            raise forms.ValidationError(_("Give a folder or a file, not both."))
        if data.get("upload") and not data.get("market"):
            raise forms.ValidationError(_("An uploaded file needs a market."))
        return data
