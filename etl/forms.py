"""Forms of the admin's doors that are not a model's own form: scheduling the pipeline."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from etl.pipeline import registered_steps

CRON_HELP = _('Minute hour day month weekday, e.g. "0 2 * * *" for 02:00 every day')


class PipelineScheduleForm(forms.Form):
    """services.pipeline_schedule's arguments, as the API's schedule-recurring takes them."""

    name = forms.CharField(label=_("name"), max_length=100, help_text=_("A schedule of the same name is replaced"))
    cron = forms.CharField(label=_("cron"), max_length=100, help_text=CRON_HELP)
    timezone = forms.CharField(
        label=_("time zone"), max_length=64, initial="UTC", help_text=_("IANA zone, e.g. Europe/Istanbul")
    )
    steps = forms.MultipleChoiceField(
        label=_("steps"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked: the default steps"),
    )
    path = forms.CharField(
        label=_("import path"), required=False, max_length=500, help_text=_("Under the data root; empty: no import")
    )
    continue_on_failure = forms.BooleanField(label=_("continue on failure"), required=False, initial=True)
    max_minutes = forms.FloatField(label=_("maximum minutes"), required=False, min_value=0.01)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["steps"].choices = [(step.name, f"{step.order} · {step.name}") for step in registered_steps()]
