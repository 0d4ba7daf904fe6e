"""One request policy for every endpoint: what a request says, it means.

- Field names are accepted in snake_case (ours) and camelCase or PascalCase
  (the old system's): ``batch_size``, ``batchSize`` and ``BatchSize`` are one
  field. The same field given twice in two casings is a 400 (``given_twice``).
- A key that is neither a field nor a declared option of the old system is a
  400 naming it (``unknown_field``), never dropped without a word.
- An old-system option we accept but do not act on is declared with its reason
  (``ignored_options = {"executeInParallel": "..."}``); a request that sends it
  gets 2xx with ``"ignored_options": {name: reason}`` in the response, and the
  view keeps the same dict on its run record (:func:`ignored_options_record`).
- An old-system name for one of our fields is declared once
  (``old_names = {"overwriteExistingData": "overwrite"}``).
- Ids are accepted as the old system printed them: ``12`` or ``"12"``
  (:class:`IdField`, :class:`RelatedIdField`).
- A provider named explicitly that cannot run (unknown, disabled, no API key)
  is a 400 saying why (:func:`explicit_sources_check`, :class:`SourcesField`).

Applying it: a request serializer subclasses :class:`PolicySerializer`; a view
mixes in :class:`PolicyViewMixin` and calls ``self.policy_body(Serializer)`` /
``self.policy_query(...)``; the mixin adds ``ignored_options`` to its dict
responses. Query strings without a serializer go through
:func:`query_params_parse`. Responses are snake_case; the few old response
names the guides tell operators to read are added as copies by
:func:`old_names_add` (docs/api.md, "Casing" and "Glossary").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.db import connection
from django.http import QueryDict
from django.utils.translation import gettext
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.parsers import FormParser, JSONParser

from etl.models import DataProvider

UNKNOWN_FIELD = "unknown_field"
GIVEN_TWICE = "given_twice"
SOURCE_UNAVAILABLE = "source_unavailable"
# When errors of several kinds come back at once, the top-level code names the first kind here.
CODE_PRIORITY = (UNKNOWN_FIELD, GIVEN_TWICE, SOURCE_UNAVAILABLE)
INT64_MAX = 2**63 - 1

_WORD_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_name(key: str) -> str:
    """``batchSize`` / ``BatchSize`` / ``batch_size`` -> ``batch_size``; ``maxURLLength`` -> ``max_url_length``."""
    return _WORD_BOUNDARY.sub("_", key).lower()


def camel_name(name: str) -> str:
    """``batch_size`` -> ``batchSize`` (how the old system spelt our fields)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class PolicyValidationError(serializers.ValidationError):
    """A validation error whose top-level ``code`` is more precise than ``invalid``
    (``unknown_field``, ``given_twice``, ...); the API's exception handler renders
    it in the one error shape with that code."""

    def __init__(self, detail: Any, *, api_code: str = "invalid"):
        super().__init__(detail)
        self.api_code = api_code


def _codes(errors: Any) -> Iterable[str]:
    if isinstance(errors, Mapping):
        for value in errors.values():
            yield from _codes(value)
    elif isinstance(errors, list | tuple):
        for value in errors:
            yield from _codes(value)
    else:
        yield getattr(errors, "code", None) or "invalid"


def api_code_of(errors: Any) -> str:
    """The top-level code for a set of field errors: the most telling kind among them."""
    found = set(_codes(errors))
    return next((code for code in CODE_PRIORITY if code in found), "invalid")


def _unknown_message(key: str, known: Iterable[str]) -> str:
    names = ", ".join(sorted(known)) or gettext("none")
    return gettext(
        "unknown field '%(key)s': neither a field of this endpoint nor an option of the old system "
        "(fields, in snake_case or camelCase: %(names)s)"
    ) % {"key": key, "names": names}


def _twice_message(key: str, other: str, name: str) -> str:
    return gettext("'%(key)s' and '%(other)s' are the same field (%(name)s) given twice: give it once") % {
        "key": key,
        "other": other,
        "name": name,
    }


@dataclass(frozen=True, slots=True)
class KeyPlan:
    """How the keys of one request map onto a serializer's fields."""

    renamed: dict[str, str]  # key as given -> field name
    ignored: dict[str, str]  # key as given -> reason
    errors: dict[str, list[serializers.ErrorDetail]] = field(default_factory=dict)


def keys_plan(
    keys: Iterable[str],
    *,
    fields: Iterable[str],
    old_names: Mapping[str, str] | None = None,
    ignored_options: Mapping[str, str] | None = None,
) -> KeyPlan:
    """Match each key to a field (in any casing, or through an old name), to an
    ignored old option, or to nothing (an error). Two keys landing on one field
    are an error too."""
    fields = list(fields)
    by_form = {snake_name(name): name for name in fields}
    by_form.update({name: name for name in fields})
    for old, ours in (old_names or {}).items():
        by_form.setdefault(snake_name(old), ours)
    ignored_forms = {snake_name(name): reason for name, reason in (ignored_options or {}).items()}
    renamed: dict[str, str] = {}
    ignored: dict[str, str] = {}
    errors: dict[str, list[serializers.ErrorDetail]] = {}
    first_key: dict[str, str] = {}  # field (or ignored form) -> the key that named it first
    for key in keys:
        form = key if key in by_form else snake_name(key)
        target = by_form.get(form)
        slot = target if target is not None else f"ignored:{form}" if form in ignored_forms else None
        if slot is None:
            errors[key] = [serializers.ErrorDetail(_unknown_message(key, fields), code=UNKNOWN_FIELD)]
            continue
        if slot in first_key:
            name = target or form
            errors[key] = [serializers.ErrorDetail(_twice_message(first_key[slot], key, name), code=GIVEN_TWICE)]
            continue
        first_key[slot] = key
        if target is not None:
            renamed[key] = target
        else:
            ignored[key] = ignored_forms[form]
    return KeyPlan(renamed=renamed, ignored=ignored, errors=errors)


def _rebuild(data: Any, renamed: Mapping[str, str]) -> Any:
    """The request data with each key under its field name; a QueryDict stays one
    (form posts and query strings carry lists that way)."""
    if isinstance(data, QueryDict):
        out = QueryDict(mutable=True)
        for key, values in data.lists():
            if key in renamed:
                out.setlist(renamed[key], values)
        return out
    return {renamed[key]: value for key, value in data.items() if key in renamed}


class PolicySerializer(serializers.Serializer):
    """Base for every request serializer (bodies and query strings).

    Subclasses declare their fields in snake_case and, where the old system had
    them, ``old_names`` (old name -> field) and ``ignored_options`` (old option
    -> why we accept it without acting on it). After ``is_valid()``,
    ``ignored_options`` holds what the request sent of the latter, nested
    serializers' under ``parent.key``."""

    old_names: ClassVar[Mapping[str, str]] = {}
    ignored_options: ClassVar[Mapping[str, str]] = {}

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, Mapping) and not isinstance(data, QueryDict):
            return super().to_internal_value(data)  # DRF's "expected a dictionary" error
        writable = [name for name, f in self.fields.items() if not f.read_only]
        plan = keys_plan(data.keys(), fields=writable, old_names=self.old_names, ignored_options=self.ignored_options)
        self._ignored_found = plan.ignored
        if plan.errors:
            raise serializers.ValidationError(plan.errors)
        return super().to_internal_value(_rebuild(data, plan.renamed))

    @property
    def ignored_options_found(self) -> dict[str, str]:
        """Old options the request sent that we accept but do not act on: {name as sent: reason}."""
        found = dict(getattr(self, "_ignored_found", {}))
        for name, child in self.fields.items():
            if isinstance(child, PolicySerializer):
                found.update({f"{name}.{key}": reason for key, reason in child.ignored_options_found.items()})
        return found

    def is_valid(self, *, raise_exception: bool = False) -> bool:
        valid = super().is_valid(raise_exception=False)
        if not valid and raise_exception:
            raise PolicyValidationError(self.errors, api_code=api_code_of(self.errors))
        return valid


@dataclass(frozen=True, slots=True)
class QueryParams:
    """A query string under our names: ``values`` holds every value given
    (a parameter may repeat), ``get`` the last one, as Django's QueryDict does."""

    values: dict[str, list[str]]
    ignored_options: dict[str, str]

    def get(self, name: str, default: str | None = None) -> str | None:
        given = self.values.get(name)
        return given[-1] if given else default


def query_params_parse(
    query: QueryDict | Mapping[str, Any],
    *,
    fields: Iterable[str],
    old_names: Mapping[str, str] | None = None,
    ignored_options: Mapping[str, str] | None = None,
) -> QueryParams:
    """Query parameters under our names (``?pageSize=`` -> ``page_size``), the
    ignored old ones apart; a 400 naming any parameter that is neither."""
    plan = keys_plan(list(query.keys()), fields=fields, old_names=old_names, ignored_options=ignored_options)
    if plan.errors:
        raise PolicyValidationError(plan.errors, api_code=api_code_of(plan.errors))
    values: dict[str, list[str]] = {}
    for key, name in plan.renamed.items():
        given = query.getlist(key) if hasattr(query, "getlist") else query[key]
        values[name] = [str(v) for v in given] if isinstance(given, list | tuple) else [str(given)]
    return QueryParams(values=values, ignored_options=plan.ignored)


_ID = re.compile(r"\s*(\d{1,19})\s*")


def id_parse(value: Any, *, prefixes: Iterable[str] = ()) -> int:
    """``12``, ``"12"`` (and ``"correction:12"`` for a declared prefix) -> 12;
    anything else (floats, booleans, ``"12.5"``, ``"abc"``, 0, past 2^63) -> ValueError."""
    if isinstance(value, bool):
        raise ValueError(gettext("expected an id, got a boolean"))
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value
        for prefix in prefixes:
            for separator in (":", "-", "#"):
                if text.strip().lower().startswith(f"{prefix.lower()}{separator}"):
                    text = text.strip()[len(prefix) + 1 :]
                    break
        match = _ID.fullmatch(text)
        if not match:
            raise ValueError(gettext('expected an id such as 12 or "12", got %(value)s') % {"value": repr(value)})
        number = int(match.group(1))
    else:
        raise ValueError(gettext('expected an id such as 12 or "12", got %(value)s') % {"value": type(value).__name__})
    if not 1 <= number <= INT64_MAX:
        raise ValueError(
            gettext("%(number)s is not a valid id (1 to %(most)s)") % {"number": number, "most": INT64_MAX}
        )
    return number


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string", "example": "12"}]})
class IdField(serializers.Field):
    """An id as a number or as the string the old system printed (``"12"``)."""

    def __init__(self, *, prefixes: Iterable[str] = (), **kwargs: Any):
        self.prefixes = tuple(prefixes)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        try:
            return id_parse(data, prefixes=self.prefixes)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc), code="invalid_id") from None

    def to_representation(self, value: Any) -> int:
        return int(value)


class RelatedIdField(serializers.PrimaryKeyRelatedField):
    """A row by id, given as ``12`` or ``"12"``: the validated value is the object."""

    def __init__(self, *, prefixes: Iterable[str] = (), **kwargs: Any):
        self.prefixes = tuple(prefixes)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        try:
            pk = id_parse(data, prefixes=self.prefixes)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc), code="invalid_id") from None
        return super().to_internal_value(pk)


def source_problem(provider: DataProvider | None, code: str) -> str | None:
    """Why the provider named `code` cannot run now (every reason), or None when it can."""
    if provider is None:
        return gettext("%(provider)s: no such provider") % {"provider": code}
    reasons = []
    if provider.requires_api_key and not provider.has_api_key:
        reasons.append(
            gettext("needs an API key and none is set (set %(provider)s_API_KEY in the environment)")
            % {"provider": code}
        )
    if not provider.is_enabled:
        reasons.append(gettext("disabled (enable it on the data provider in the admin)"))
    if not reasons:
        return None
    if len(reasons) == 2:
        reasons = [gettext("%(first)s and %(second)s") % {"first": reasons[0], "second": reasons[1]}]
    return f"{code}: {reasons[0]}"


def explicit_sources_check(codes: Iterable[str], *, always_available: Iterable[str] = ()) -> list[str]:
    """Upper-cased provider codes, each one able to run; a ValidationError listing
    every named source that cannot (unknown, disabled, no key), and why."""
    wanted = [str(code).strip().upper() for code in codes]
    free = {code.upper() for code in always_available}
    providers = {p.code: p for p in DataProvider.objects.filter(code__in=set(wanted) - free)}
    problems = [p for code in wanted if code not in free and (p := source_problem(providers.get(code), code))]
    if problems:
        raise serializers.ValidationError(
            [serializers.ErrorDetail(message, code=SOURCE_UNAVAILABLE) for message in problems]
        )
    return wanted


class SourcesField(serializers.ListField):
    """Provider codes named explicitly: each must be able to run (400 saying why not)."""

    def __init__(self, *, always_available: Iterable[str] = (), **kwargs: Any):
        self.always_available = tuple(always_available)
        kwargs.setdefault("child", serializers.CharField(max_length=32))
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> list[str]:
        return explicit_sources_check(super().to_internal_value(data), always_available=self.always_available)


class PolicyViewMixin:
    """For API views: parse the body or query with the policy and answer every dict
    response with the ``ignored_options`` the request sent (an empty dict when none)."""

    def policy_body(self, serializer_class: type[serializers.Serializer], **kwargs: Any) -> Any:
        return self._policy_parse(serializer_class(data=self.request.data, **kwargs))

    def policy_query(self, serializer_class: type[serializers.Serializer], **kwargs: Any) -> Any:
        return self._policy_parse(serializer_class(data=self.request.query_params, **kwargs))

    def policy_query_params(self, *, fields: Iterable[str], **kwargs: Any) -> QueryParams:
        params = query_params_parse(self.request.query_params, fields=fields, **kwargs)
        self.policy_ignored_add(params.ignored_options)
        return params

    def policy_ignored_add(self, ignored: Mapping[str, str]) -> None:
        self.ignored_options = {**getattr(self, "ignored_options", {}), **ignored}

    def _policy_parse(self, serializer: Any) -> Any:
        serializer.is_valid(raise_exception=True)
        self.policy_ignored_add(getattr(serializer, "ignored_options_found", {}))
        return serializer

    def finalize_response(self, request, response, *args, **kwargs):
        ignored = getattr(self, "ignored_options", None)
        if ignored is not None and response.status_code < 400 and isinstance(getattr(response, "data", None), dict):
            response.data = ignored_options_add(response.data, ignored)
        return super().finalize_response(request, response, *args, **kwargs)


def ignored_options_add(data: Mapping[str, Any], ignored: Mapping[str, str]) -> dict[str, Any]:
    """The response body with ``ignored_options`` ({name: reason}, maybe empty)."""
    return {**data, "ignored_options": dict(ignored)}


def ignored_options_record(*, run: Any, ignored: Mapping[str, str], field: str = "options") -> None:
    """Keep the ignored options on the run record, under ``<field>.ignored_options``
    (a JSON field of the run's model), in one statement that merges into what the
    field holds, so a worker writing other keys at the same time loses nothing."""
    if not ignored:
        return
    model = type(run)
    column = model._meta.get_field(field).column
    table = connection.ops.quote_name(model._meta.db_table)
    column_sql = connection.ops.quote_name(column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {column_sql} = COALESCE({column_sql}, '{{}}'::jsonb)"  # noqa: S608 (names from _meta)
            " || jsonb_build_object('ignored_options', %s::jsonb) WHERE id = %s",
            [json.dumps(dict(ignored)), run.pk],
        )
    value = getattr(run, field) or {}
    setattr(run, field, {**value, "ignored_options": dict(ignored)})


def old_names_add(data: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """The response body plus, at its top level, each old response name the
    guides tell operators to read (``SymbolsAdded``) as a copy of the value at our
    dotted path (``created``, ``overall.symbol_coverage``); paths absent are skipped."""
    out = dict(data)
    for old, path in names.items():
        value: Any = data
        for part in path.split("."):
            if not isinstance(value, Mapping) or part not in value:
                break
            value = value[part]
        else:
            out[old] = value
    return out


class CurlJsonFormParser(FormParser):
    """`application/x-www-form-urlencoded` as curl sends it for `-d '{"batchSize": 500}'`
    without `-H Content-Type` (the old guides' one-liners do that): a body that is a
    JSON object is read as JSON; any other body as the form it is. Goes before
    FormParser in DEFAULT_PARSER_CLASSES."""

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read()
        if raw.lstrip()[:1] == b"{":
            return JSONParser().parse(_Replay(raw), "application/json", parser_context)
        return super().parse(_Replay(raw), media_type, parser_context)


class _Replay:
    """A read-once body handed on to another parser."""

    def __init__(self, raw: bytes):
        self.raw = raw

    def read(self, *args) -> bytes:
        raw, self.raw = self.raw, b""
        return raw
