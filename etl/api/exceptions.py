"""One error shape for the whole API: {"detail": ..., "code": ...}, plus
"errors" (field -> messages) for validation failures. Domain errors become
400/409; DRF's own exceptions keep their status codes."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.utils.translation import gettext
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from etl.errors import DomainError


def _summary(errors, prefix: str = "") -> list[str]:
    if isinstance(errors, dict):
        return [line for key, value in errors.items() for line in _summary(value, f"{prefix}{key}: ")]
    if isinstance(errors, list):
        return [line for value in errors for line in _summary(value, prefix)]
    return [f"{prefix}{errors}"]


def _flatten(errors, prefix: str = "") -> dict[str, list[str]]:
    """{"steps": {"0": ["too long"]}, "n": "bad"} -> {"steps.0": ["too long"], "n": ["bad"]}:
    every key a field path, every value a list of messages, as the schema says."""
    if isinstance(errors, dict):
        out: dict[str, list[str]] = {}
        for key, value in errors.items():
            for path, messages in _flatten(value, f"{prefix}.{key}" if prefix else str(key)).items():
                out.setdefault(path, []).extend(messages)
        return out
    if isinstance(errors, list) and any(isinstance(e, dict | list) for e in errors):
        out = {}
        for i, value in enumerate(errors):
            if isinstance(value, dict | list):
                for path, messages in _flatten(value, f"{prefix}.{i}" if prefix else str(i)).items():
                    out.setdefault(path, []).extend(messages)
            else:
                out.setdefault(prefix or "non_field_errors", []).append(str(value))
        return out
    messages = errors if isinstance(errors, list) else [errors]
    return {prefix or "non_field_errors": [str(m) for m in messages]}


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response({"detail": exc.message, "code": exc.code}, status=exc.status_code)
    # DRF turns Django's Http404 / PermissionDenied into its own exceptions; do the same here so they
    # get the one shape too (a retrieve of an id that does not exist answered {"detail"} alone).
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or None)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    if isinstance(exc, exceptions.ValidationError):
        response.data = {
            "detail": gettext("Invalid input: %(problems)s") % {"problems": "; ".join(_summary(exc.detail))},
            # A policy error (etl.api.request_policy) names its kind: unknown_field, given_twice, ...
            "code": getattr(exc, "api_code", "invalid"),
            "errors": _flatten(exc.detail),
        }
    else:
        codes = exc.get_codes()
        response.data = {"detail": str(exc.detail), "code": codes if isinstance(codes, str) else exc.default_code}
    return response
