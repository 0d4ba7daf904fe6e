"""Hostile values in every field of every operation of the published schema.

Property: whatever value lands in one path parameter, query parameter or JSON
body field — a NUL byte, a control character, 10,000 characters, right-to-left
marks, emoji, `..` and absolute paths, numbers past 2^63 — the answer is never a
500, and an /api/ refusal comes in the one JSON error shape. Bodies nested
10,000 deep or of 10 MB are refused the same way. The app runs in process
against the test database, as a superuser (so every door is reachable).
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote, urlencode

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db]

HOSTILE: list[object] = [
    "\x00",
    "abc\x00def",
    "a\x07b",
    "x" * 10_000,
    "\u202eevil\u202c",
    "😀📈",
    "../../../../etc/passwd",
    "/etc/passwd",
    "a/" * 200 + "b" * 300,
    2**63,
    -(2**63) - 1,
    10**40,
    -1,
    0,
    2**31,
    2**62,
    1e308,
    "",
    " ",
    "2099-13-45",
    None,
    [],
    {},
    True,
]


def _schema() -> dict:
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


SCHEMA = _schema()
OPERATIONS = [
    (path, method, op)
    for path, item in SCHEMA["paths"].items()
    for method, op in item.items()
    if method in {"get", "post", "put", "patch", "delete"}
]


def _body_properties(op: dict) -> list[str]:
    content = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    ref = content.get("schema", {}).get("$ref")
    if not ref:
        return []
    component = SCHEMA["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return list(component.get("properties", {}))


def _params(op: dict, where: str) -> list[str]:
    return [p["name"] for p in op.get("parameters", []) if p["in"] == where]


def _fill(path: str, value: object, target: str | None) -> str:
    def one(match: re.Match) -> str:
        name = match.group(1)
        return quote(str(value), safe="") if name == target else "1"

    return re.sub(r"\{([^}]+)\}", one, path)


@pytest.fixture
def client(django_user_model) -> Client:
    from etl.services import reference_data_bootstrap

    reference_data_bootstrap()
    user = django_user_model.objects.create_superuser("hostile", "h@example.com", "pw")
    return Client(HTTP_AUTHORIZATION=f"Bearer {Token.objects.create(user=user).key}", raise_request_exception=False)


def _assert_no_server_error(response, what: str) -> None:
    assert response.status_code < 500 or response.status_code == 503, f"{what}: {response.status_code}"
    if response.status_code in (400, 404, 413):
        assert response["Content-Type"].startswith("application/json"), f"{what}: {response['Content-Type']}"
        body = response.json()
        assert "detail" in body and "code" in body, f"{what}: {body}"


@pytest.mark.parametrize(("path", "method", "op"), OPERATIONS, ids=[f"{m.upper()} {p}" for p, m, _ in OPERATIONS])
def test_hostile_value_in_any_field_never_gets_a_500(client, path, method, op):
    """Every hostile value in every field of the operation, one field at a time."""
    targets = (
        [("path", n) for n in _params(op, "path")]
        + [("query", n) for n in _params(op, "query")]
        + [("body", n) for n in _body_properties(op)]
    ) or [("query", "unexpected")]
    for where, name in targets:
        for value in HOSTILE:
            url = _fill(path, value, name if where == "path" else None)
            kwargs: dict = {}
            if where == "query" and value is not None:
                kwargs["QUERY_STRING"] = urlencode(
                    {name: json.dumps(value) if isinstance(value, list | dict) else value}
                )
            if method in {"post", "put", "patch"}:
                kwargs["data"] = json.dumps({name: value} if where == "body" else {})
                kwargs["content_type"] = "application/json"
            response = getattr(client, method)(url, **kwargs)
            _assert_no_server_error(response, f"{method.upper()} {url[:120]} {where}:{name}={str(value)[:40]!r}")


POST_PATHS = sorted({p for p, m, _ in OPERATIONS if m == "post"})


@pytest.mark.parametrize("path", POST_PATHS)
def test_deeply_nested_and_huge_bodies_are_refused_in_the_error_shape(client, path):
    url = _fill(path, 1, None)
    deep = "[" * 10_000 + "]" * 10_000
    response = client.post(url, data=deep, content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == "too_deep"
    huge = json.dumps({"padding": "x" * (10 * 1024 * 1024)})
    response = client.post(url, data=huge, content_type="application/json")
    assert response.status_code == 413 and response.json()["code"] == "too_large"


def test_a_form_body_with_too_many_fields_is_refused_in_the_error_shape(client):
    response = client.post(
        "/api/etl/enrichment-dead-letters/resubmit",
        data="&".join(f"f{i}=1" for i in range(1500)),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400 and response.json()["code"] == "too_many_fields"
    multipart = client.post("/api/v1/enrichment/trigger", data={"timeframes": ["0"] * 1500})
    assert multipart.status_code == 400 and multipart.json()["code"] == "too_many_fields"
