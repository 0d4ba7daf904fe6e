from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _


def validate_time_zone(value: str) -> None:
    if value and value not in zoneinfo.available_timezones():
        raise ValidationError(_("%(zone)s is not an IANA time zone."), params={"zone": value})


class OperatorPreference(models.Model):
    """How one operator reads the console. Blank means "no choice": the
    browser's language, and the market's zone on a market's pages (UTC elsewhere)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="operator_preference", verbose_name=_("user")
    )
    language = models.CharField(
        _("language"), max_length=16, blank=True, choices=settings.LANGUAGES, help_text=_("Blank: the browser's.")
    )
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        validators=[validate_time_zone],
        help_text=_("IANA name, e.g. Europe/Istanbul. Blank: the market's zone on a market's pages, else UTC."),
    )

    class Meta:
        db_table = "operator_preferences"
        verbose_name = _("operator preference")
        verbose_name_plural = _("operator preferences")

    def __str__(self) -> str:
        return str(self.user)


def operator_preference_of(user) -> OperatorPreference | None:
    """The signed-in operator's preference row, or None (anonymous, or never chosen)."""
    if user is None or not user.is_authenticated:
        return None
    try:
        return user.operator_preference
    except OperatorPreference.DoesNotExist:
        return None
