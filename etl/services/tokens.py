"""API tokens: issue (the key shown once), revoke, and check a presented key."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.translation import gettext

from etl.errors import DomainError
from etl.models import ApiToken

# Writing last_used_at on every request would turn every API read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: ApiToken
    key: str  # the only time the key exists outside the caller's hands


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_token_issue(
    *, username: str, name: str, expires_at: datetime | None = None, issued_by: str = ""
) -> IssuedToken:
    """Create a token for a user; returns the key once (only its hash is stored)."""
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise DomainError(gettext("user %(user)s: no such user") % {"user": repr(username)}, code="unknown_user")
    if not user.is_active:
        raise DomainError(gettext("user %(user)s is inactive") % {"user": repr(username)}, code="inactive_user")
    if expires_at is not None and expires_at <= timezone.now():
        raise DomainError(
            gettext("expires_at %(moment)s is in the past") % {"moment": expires_at.isoformat()}, code="bad_expiry"
        )
    key = secrets.token_hex(20)
    token = ApiToken.objects.create(
        user=user, name=name[:100], prefix=key[:8], key_hash=key_hash(key), expires_at=expires_at, created_by=issued_by
    )
    return IssuedToken(token=token, key=key)


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke a token now (idempotent: a revoked token keeps its first revocation time)."""
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db()
    return token


def api_token_check(*, key: str) -> ApiToken | None:
    """The live token for a presented key, or None when the key is not one of ours.
    Raises DomainError (code token_revoked / token_expired) for a known but dead key."""
    token = ApiToken.objects.select_related("user").filter(key_hash=key_hash(key)).first()
    if token is None:
        return None
    now = timezone.now()
    if token.revoked_at is not None:
        raise DomainError(
            gettext("token %(prefix)s… was revoked at %(moment)s")
            % {"prefix": token.prefix, "moment": token.revoked_at.isoformat()},
            code="token_revoked",
        )
    if token.expires_at is not None and token.expires_at <= now:
        raise DomainError(
            gettext("token %(prefix)s… expired at %(moment)s")
            % {"prefix": token.prefix, "moment": token.expires_at.isoformat()},
            code="token_expired",
        )
    if token.last_used_at is None or token.last_used_at < now - LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token
