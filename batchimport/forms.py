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


class ImportScheduleForm(forms.Form):
    """services.import_schedule_create's arguments: when, what, and the import request it keeps.
    A field left empty is not stored: the market's import settings apply when the schedule fires."""

    name = forms.SlugField(label=_("name"), max_length=100)
    cron = forms.CharField(
        label=_("cron"), max_length=100, help_text=_('Minute hour day month weekday, e.g. "0 2 * * *"')
    )
    timezone = forms.CharField(
        label=_("time zone"), max_length=64, initial="UTC", help_text=_("IANA zone, e.g. Europe/Istanbul")
    )
    folder = forms.CharField(
        label=_("folder"), max_length=500, initial="DATA", help_text=_("A folder under DATA_ROOT (relative)")
    )
    market = forms.ChoiceField(label=_("market"), choices=MARKET_CHOICES, required=False)
    batch_size = forms.IntegerField(label=_("batch size"), min_value=1, max_value=1_000_000, required=False)
    workers = forms.IntegerField(
        label=_("workers"),
        min_value=1,
        max_value=MAX_CONCURRENCY_LIMIT,
        required=False,
        help_text=_("Worker tasks sharing the job, never more at once"),
    )
    sla_minutes = forms.IntegerField(label=_("SLA (minutes)"), min_value=1, max_value=10_000, required=False)
    overwrite = forms.BooleanField(
        label=_("overwrite"), required=False, help_text=_("Overwrite stored candles whose values differ")
    )
    sequential = forms.BooleanField(
        label=_("one market after another"),
        required=False,
        help_text=_("All markets: in priority order instead of side by side"),
    )

    def import_options(self) -> dict:
        """The import request to store, under the service's names (empty fields left out)."""
        d = self.cleaned_data
        return {
            "market": d["market"] or None,
            "batch_size": d["batch_size"],
            "max_concurrency": d["workers"],
            "sla_minutes": d["sla_minutes"],
            "overwrite": d["overwrite"] or None,
            "run_in_parallel": False if d["sequential"] else None,
        }
