"""The admin's start-import form."""

from __future__ import annotations

from django import forms

from batchimport.markets import MARKETS
from batchimport.models import MarketKey

MARKET_CHOICES = [
    ("", f"All markets (folder with {', '.join(spec.folder + '/' for spec in MARKETS)})"),
    *MarketKey.choices,
]


class StartImportForm(forms.Form):
    market = forms.ChoiceField(choices=MARKET_CHOICES, required=False)
    folder = forms.CharField(
        required=False, help_text="A folder or file under DATA_ROOT (relative), e.g. sample or sample/BIST"
    )
    upload = forms.FileField(required=False, help_text="…or upload one CSV file (a market is then required)")
    batch_size = forms.IntegerField(min_value=1, max_value=1_000_000, initial=50_000)
    workers = forms.IntegerField(min_value=1, max_value=16, initial=2, help_text="django-q2 workers sharing the job")
    overwrite = forms.BooleanField(required=False, help_text="Overwrite stored candles whose values differ")

    def clean(self):
        data = super().clean()
        if not data.get("folder") and not data.get("upload"):
            raise forms.ValidationError("Give a folder under DATA_ROOT or upload a file.")
        if data.get("folder") and data.get("upload"):
            raise forms.ValidationError("Give a folder or a file, not both.")
        if data.get("upload") and not data.get("market"):
            raise forms.ValidationError("An uploaded file needs a market.")
        return data
