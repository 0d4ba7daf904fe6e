"""Token authentication that accepts the old system's `Authorization: Bearer <key>`
as well as DRF's `Token <key>`, for both our named tokens (with expiry and
revocation) and the tokens the login endpoint hands out."""

from __future__ import annotations

from django.utils.translation import gettext
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication, get_authorization_header

from etl.errors import DomainError
from etl.services.tokens import api_token_check

KEYWORDS = (b"bearer", b"token")


class BearerTokenAuthentication(TokenAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in KEYWORDS:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                gettext("Invalid Authorization header: expected '%(keyword)s <token>'.")
                % {"keyword": parts[0].decode(errors="replace")}
            )
        try:
            key = parts[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed(gettext("Invalid token: it contains non-ASCII characters.")) from None
        return self.authenticate_credentials(key)

    def authenticate_credentials(self, key: str):
        try:
            token = api_token_check(key=key)
        except DomainError as exc:
            raise exceptions.AuthenticationFailed(exc.message, code=exc.code) from None
        if token is None:
            return super().authenticate_credentials(key)  # a login token (rest_framework.authtoken)
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(gettext("User inactive or deleted."))
        return token.user, token
