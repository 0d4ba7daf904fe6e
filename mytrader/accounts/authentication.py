"""The API's token authentication, followed by the operator's chosen language.

A session's operator gets their language from OperatorPreferenceMiddleware, but a
token names its user only inside the DRF view, after every middleware has run: so
the language is switched here, once the token is known. Without a chosen language
the request's Accept-Language (LocaleMiddleware) stays in force."""

from __future__ import annotations

from django.utils import translation

from etl.api.authentication import BearerTokenAuthentication
from mytrader.accounts.models import operator_preference_of


class OperatorTokenAuthentication(BearerTokenAuthentication):
    def authenticate(self, request):
        result = super().authenticate(request)
        preference = operator_preference_of(result[0]) if result is not None else None
        if preference is not None and preference.language:
            translation.activate(preference.language)
            request._request.LANGUAGE_CODE = translation.get_language()
        return result
