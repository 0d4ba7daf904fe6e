"""Schemathesis over every operation of /api/schema/, as anonymous, in process.

Property: no request, however odd, gets a 500, and every operation but the
public ones refuses it (401), or the input guard does first (400/413). The app
runs in process (WSGI) against the test database. The same as staff, with 100
examples per operation, response conformance and stateful links, runs over HTTP
against a running server: test_schemathesis_live.py.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis import checks as st_checks

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db]

FUZZ = settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _load_schema():
    """The schema the server publishes at /api/schema/, generated in process
    (its endpoint needs a user, and collection happens before any database)."""
    import json

    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    document = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
    loaded = schemathesis.openapi.from_dict(document)
    loaded.app = get_wsgi_application()
    return loaded


@pytest.fixture(autouse=True)
def _keep_test_connection_open():
    # The real WSGI handler closes the database connection around each request;
    # inside a test that would close the test's transaction (Django's own test
    # client disconnects this handler the same way).
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def staff_token(django_user_model) -> str:
    from etl import services

    services.reference_data_bootstrap()
    user = django_user_model.objects.create_superuser("fuzzer", "fuzz@example.com", "pw")
    return Token.objects.create(user=user).key


schema = _load_schema()
PUBLIC_PATHS = {
    "/api/etl/health",
    "/api/auth/token/",
    "/api/etl/asset-class-correction/health",
    "/api/batch-processing/health",
}
ANON = settings(FUZZ, max_examples=5)
# What the input guard answers; anything else at 400 would mean a view ran for an anonymous user.
GUARD_CODES = {
    "nul_byte",
    "control_character",
    "too_long",
    "too_deep",
    "too_large",
    "too_many_fields",
    "parse_error",
    "out_of_range",
}


@schema.parametrize()
@ANON
def test_api_as_anonymous(case, staff_token):
    response = case.call()
    case.validate_response(response, checks=[st_checks.not_a_server_error])
    if case.path not in PUBLIC_PATHS:
        # 401 normally; 404/405 when the URL or method matches no route at all; 400/413 when
        # the input guard refuses the request before anything else looks at it (etl.api.guard).
        assert response.status_code in (400, 401, 404, 405, 413), (
            f"{case.method} {case.formatted_path} -> {response.status_code}"
        )
        if response.status_code in (400, 413):
            assert response.json()["code"] in GUARD_CODES, response.json()
