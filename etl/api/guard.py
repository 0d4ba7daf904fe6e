"""One input guard in front of every API view.

Before a request reaches a view (and so the database or the file system), every
string it carries — path, query parameters, JSON body fields, keys included — is
checked for NUL bytes, control characters and length, every JSON number for the
64-bit range, the body for size and nesting depth. A refusal is a 400 (413 for a
body too large) in the API's one error shape, naming the field. Views and
serializers still validate meaning (ranges of a page number, a known market);
this guard only makes sure that nothing a database or an OS call cannot hold
gets that far. Limits are settings (README, "Settings"):

- ``API_MAX_BODY_BYTES`` (default 1 MiB): a larger body answers 413;
- ``API_MAX_STRING_LENGTH`` (default 4,096 characters): any one string;
- ``API_MAX_JSON_DEPTH`` (default 32): arrays and objects nested deeper.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.exceptions import TooManyFieldsSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.utils import translation
from django.utils.translation import gettext

INT64_MAX = 2**63 - 1
# C0 controls and DEL, except tab, newline and carriage return (text fields may hold them).
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# In a URL path or a query parameter no control character makes sense.
CONTROL_STRICT = re.compile(r"[\x00-\x1f\x7f]")
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
INTEGER = re.compile(r"[+-]?\d+")  # strings are at most API_MAX_STRING_LENGTH long


class Refusal(Exception):
    def __init__(self, field: str, message: str, *, code: str = "invalid", status: int = 400):
        super().__init__(message)
        self.field, self.message, self.code, self.status = field, message, code, status


def _limit(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def _check_string(field: str, value: str, *, strict: bool) -> None:
    if "\x00" in value:
        raise Refusal(field, gettext("%(field)s: contains a NUL byte") % {"field": field}, code="nul_byte")
    if (CONTROL_STRICT if strict else CONTROL).search(value):
        raise Refusal(
            field, gettext("%(field)s: contains a control character") % {"field": field}, code="control_character"
        )
    limit = _limit("API_MAX_STRING_LENGTH", 4096)
    if len(value) > limit:
        raise Refusal(
            field,
            gettext("%(field)s: %(length)s characters, more than the limit of %(limit)s")
            % {"field": field, "length": len(value), "limit": limit},
            code="too_long",
        )


def _walk(value: Any, path: str, depth: int) -> Iterator[tuple[str, Any]]:
    """(field path, leaf) for every leaf and every key, refusing nesting past the limit."""
    if depth > _limit("API_MAX_JSON_DEPTH", 32):
        raise Refusal(
            path or "body",
            gettext("%(field)s: nested deeper than %(levels)s levels") % {"field": path or "body", "levels": depth - 1},
            code="too_deep",
        )
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            yield child, key
            yield from _walk(item, child, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]" if path else f"[{i}]", depth + 1)
    else:
        yield path or "body", value


def _check_json(body: bytes) -> None:
    try:
        document = json.loads(body)
    except RecursionError:
        raise Refusal("body", gettext("body: JSON nested too deeply"), code="too_deep") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refusal(
            "body", gettext("body: not valid JSON (%(error)s)") % {"error": exc}, code="parse_error"
        ) from None
    for field, leaf in _walk(document, "", 1):
        if isinstance(leaf, str):
            _check_string(field, leaf, strict=False)
        elif isinstance(leaf, int) and not isinstance(leaf, bool) and abs(leaf) > INT64_MAX:
            raise Refusal(
                field,
                gettext("%(field)s: %(value)s is out of range") % {"field": field, "value": leaf},
                code="out_of_range",
            )
        elif isinstance(leaf, float) and not math.isfinite(leaf):
            raise Refusal(field, gettext("%(field)s: not a finite number") % {"field": field}, code="out_of_range")


def request_check(request: HttpRequest) -> None:
    """Raise Refusal for the first thing in the request that no view should see."""
    _check_string("path", request.path, strict=True)  # already percent-decoded
    for key, values in request.GET.lists():
        _check_string(gettext("query parameter name"), key, strict=True)
        for value in values:
            _check_string(key, value, strict=True)
            if INTEGER.fullmatch(value) and abs(int(value)) > INT64_MAX:
                raise Refusal(
                    key,
                    gettext("%(field)s: %(value)s is out of range") % {"field": key, "value": value},
                    code="out_of_range",
                )
    limit = _limit("API_MAX_BODY_BYTES", 1024 * 1024)
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > limit:
        raise Refusal(
            "body",
            gettext("body: %(length)s bytes, more than the limit of %(limit)s") % {"length": length, "limit": limit},
            code="too_large",
            status=413,
        )
    if length and request.content_type == "application/json":
        _check_json(request.body)
    elif length and request.content_type in FORM_TYPES:
        # Parsed here so that Django's own refusals (more fields than DATA_UPLOAD_MAX_NUMBER_FIELDS,
        # a broken multipart body) answer in the API's shape, not as Django's HTML 400 page. DRF
        # reads a form already parsed by middleware.
        try:
            request.POST  # noqa: B018 - parsing is the point
        except TooManyFieldsSent:
            most = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
            raise Refusal(
                "body", gettext("body: more than %(most)s form fields") % {"most": most}, code="too_many_fields"
            ) from None
        except (MultiPartParserError, UnicodeDecodeError) as exc:
            raise Refusal(
                "body", gettext("body: not a valid form (%(error)s)") % {"error": exc}, code="parse_error"
            ) from None


class ApiInputGuardMiddleware:
    """Runs `request_check` on every /api/ request; refusals answer {detail, code, errors}.
    An /api/ path that matches no route answers 404 in the same shape.

    It runs before LocaleMiddleware and before anyone is authenticated, so its refusals
    speak the language the request asks for (Accept-Language), not an operator's choice."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith("/api/"):
            return self.get_response(request)
        try:
            with translation.override(translation.get_language_from_request(request)):
                request_check(request)
        except Refusal as refusal:
            body = {"detail": refusal.message, "code": refusal.code, "errors": {refusal.field: [refusal.message]}}
            return JsonResponse(body, status=refusal.status)
        response = self.get_response(request)
        if response.status_code == 404 and not response.get("Content-Type", "").startswith("application/json"):
            # No route matched (e.g. `/jobs/abc/status` where an id is expected): Django's HTML page
            # would break the API's one error shape.
            detail = gettext("No API endpoint matches %(method)s %(path)s") % {
                "method": request.method,
                "path": request.path_info,
            }
            return JsonResponse({"detail": detail, "code": "not_found"}, status=404)
        return response
