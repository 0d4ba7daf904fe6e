"""The schema's part of the API's one shape: every operation documents the errors it
can answer, in the one error shape (etl.api.exceptions), and where a 202's run is.

`ApiAutoSchema` is REST_FRAMEWORK's DEFAULT_SCHEMA_CLASS. What each operation can
answer besides what its view declares:

- 400: any request (the input guard, etl.api.guard: a NUL byte, a string past
  API_MAX_STRING_LENGTH, JSON too deep, a number past 64 bits; and field errors);
- 401: any request that carries authentication (no credentials, or a token that
  is unknown, expired or revoked: the detail says which);
- 403: a view that needs staff with a permission (for reads only where it says
  so), and any write under session authentication (CSRF);
- 404: any path with an id or a name in it;
- 413: any request with a body (API_MAX_BODY_BYTES);
- 429: a throttled view (the token login).

A 202 documents its `Location` header.
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from rest_framework.permissions import SAFE_METHODS, AllowAny, IsAuthenticated

from etl.api.permissions import StaffWithPermission
from etl.api.serializers import ErrorSerializer

ERRORS = {
    "400": "Bad input: field errors under `errors` (code `invalid`, `unknown_field`, `given_twice`, ...), or "
    "the input guard's refusal (code `nul_byte`, `control_character`, `too_long`, `too_deep`, `out_of_range`, "
    "`parse_error`, `too_many_fields`)",
    "401": "No credentials, or a token that is unknown, expired or revoked (the detail says which)",
    "403": "Authenticated, but not a staff user holding the permission this needs (or, with a session, no CSRF token)",
    "404": "Nothing has this id or name",
    "413": "The body is larger than API_MAX_BODY_BYTES (code `too_large`)",
    "429": "Too many attempts: try again later (API_LOGIN_RATE)",
}
OPEN_PERMISSIONS = (AllowAny, IsAuthenticated)
LOCATION = {
    "Location": {
        "description": "Where to read the run's status (also `location` in the body)",
        "schema": {"type": "string", "format": "uri"},
    }
}


class ApiAutoSchema(AutoSchema):
    def _error_codes(self) -> list[str]:
        view, method = self.view, self.method
        authenticated = bool(view.get_authenticators())
        codes = ["400"]
        if authenticated:
            codes.append("401")
        strict = any(self._may_refuse(permission) for permission in view.get_permissions())
        if strict or (authenticated and method not in ("GET", "HEAD", "OPTIONS")):
            codes.append("403")
        if "{" in self.path:
            codes.append("404")
        if method in ("POST", "PUT", "PATCH"):
            codes.append("413")
        if getattr(view, "throttle_classes", None):
            codes.append("429")
        return codes

    def _may_refuse(self, permission) -> bool:
        """Can this permission refuse an authenticated user here? (StaffWithPermission lets reads through.)"""
        if isinstance(permission, OPEN_PERMISSIONS):
            return False
        reads_open = self.method in SAFE_METHODS and not getattr(self.view, "perms_for_reads", False)
        return not (isinstance(permission, StaffWithPermission) and reads_open)

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code in self._error_codes():
            if code not in responses:
                responses[code] = self._get_response_for_code(ErrorSerializer, code)
                responses[code]["description"] = ERRORS[code]
        if "202" in responses:
            responses["202"].setdefault("headers", {}).update(LOCATION)
        return responses
