"""API tokens: `Bearer` and `Token` both authenticate; expiry and revocation answer 401 saying why."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from etl.models import ApiToken
from etl.services.tokens import api_token_issue, api_token_revoke

pytestmark = pytest.mark.django_db

URL = "/api/asset-classes/"


@pytest.fixture
def operator(make_user):
    return make_user(staff=True)


def call(header: str) -> tuple[int, dict]:
    response = APIClient().get(URL, HTTP_AUTHORIZATION=header)
    return response.status_code, response.json()


@pytest.mark.parametrize("keyword", ["Bearer", "Token", "bearer"])
def test_a_named_token_authenticates_with_either_keyword(operator, keyword):
    issued = api_token_issue(username=operator.username, name="script")
    assert call(f"{keyword} {issued.key}")[0] == 200
    assert ApiToken.objects.get(pk=issued.token.pk).last_used_at is not None


def test_only_the_hash_of_the_key_is_stored(operator):
    issued = api_token_issue(username=operator.username, name="script")
    row = ApiToken.objects.get(pk=issued.token.pk)
    assert issued.key not in (row.key_hash, row.prefix) and row.prefix == issued.key[:8]


def test_a_login_token_works_with_bearer(operator):
    key = Token.objects.create(user=operator).key
    assert call(f"Bearer {key}")[0] == 200


def test_an_expired_token_gets_401_saying_so(operator):
    issued = api_token_issue(username=operator.username, name="script", expires_at=timezone.now() + timedelta(hours=1))
    ApiToken.objects.filter(pk=issued.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    code, body = call(f"Bearer {issued.key}")
    assert code == 401 and "expired" in body["detail"]


def test_a_revoked_token_gets_401_saying_so(operator):
    issued = api_token_issue(username=operator.username, name="script")
    api_token_revoke(token=issued.token)
    code, body = call(f"Bearer {issued.key}")
    assert code == 401 and "revoked" in body["detail"]


@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Bearer nosuchkey"])
def test_malformed_or_unknown_keys_get_401(header):
    assert call(header)[0] == 401


def test_anonymous_401_names_the_bearer_scheme():
    response = APIClient().get(URL)
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer"


def test_the_command_issues_lists_and_revokes(operator, capsys):
    call_command("api_token", "--json", "issue", "--user", operator.username, "--name", "nightly")
    issued = json.loads(capsys.readouterr().out)
    assert call(f"Bearer {issued['key']}")[0] == 200
    call_command("api_token", "--json", "list")
    listed = json.loads(capsys.readouterr().out)["tokens"]
    assert [t["id"] for t in listed] == [issued["id"]] and "key" not in listed[0]
    call_command("api_token", "revoke", str(issued["id"]))
    assert call(f"Bearer {issued['key']}")[0] == 401


def test_issuing_for_an_unknown_user_or_past_expiry_is_refused(operator):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no such user"):
        call_command("api_token", "issue", "--user", "nobody", "--name", "x")
    with pytest.raises(CommandError, match="in the past"):
        call_command("api_token", "issue", "--user", operator.username, "--name", "x", "--expires", "2001-01-01")


def test_the_admin_issues_a_token_showing_the_key_once_and_revokes(admin_client, operator):
    response = admin_client.post(
        "/admin/etl/apitoken/add/",
        {"user": operator.pk, "name": "from admin", "expires_at_0": "", "expires_at_1": ""},
        follow=True,
    )
    token = ApiToken.objects.get(name="from admin")
    shown = [str(m) for m in response.context["messages"] if "Copy the key" in str(m)]
    key = shown[0].rsplit(" ", 1)[1]
    assert token.prefix == key[:8] and call(f"Bearer {key}")[0] == 200
    admin_client.post("/admin/etl/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    assert call(f"Bearer {key}")[0] == 401
    assert admin_client.get(f"/admin/etl/apitoken/{token.pk}/delete/").status_code == 403
