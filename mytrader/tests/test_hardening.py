"""Production settings, security headers and login throttling."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def test_check_deploy_is_clean_with_debug_off():
    env = {
        **os.environ,
        "DEBUG": "off",
        "SECRET_KEY": "k3y-" + "x7Qp9Lz2" * 8,
        "ALLOWED_HOSTS": "data.example.com",
        "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # a developer's shell may have it; production must not
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_settings_refuse_to_start_without_a_secret_key_in_production():
    env = {**os.environ, "DEBUG": "off"}
    env.pop("SECRET_KEY", None)
    done = subprocess.run(
        [sys.executable, "-c", "import mytrader.settings"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "SECRET_KEY must be set" in done.stderr


def test_pages_carry_a_content_security_policy(client):
    policy = client.get("/admin/login/").headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy


def test_admin_login_locks_out_after_repeated_failures(client, django_user_model, settings):
    settings.AXES_ENABLED = True
    django_user_model.objects.create_user("ops", password="right-password", is_staff=True)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": "ops", "password": "wrong"})
    locked = client.post("/admin/login/", {"username": "ops", "password": "right-password"})
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session


def test_admin_login_still_works_below_the_limit(client, django_user_model, settings):
    settings.AXES_ENABLED = True
    django_user_model.objects.create_user("ops", password="right-password", is_staff=True)
    client.post("/admin/login/", {"username": "ops", "password": "wrong"})
    ok = client.post("/admin/login/", {"username": "ops", "password": "right-password"})
    assert ok.status_code == 302


def test_api_token_login_is_throttled(api_anon, django_user_model, settings):
    cache.clear()
    django_user_model.objects.create_user("bot", password="right-password")
    codes = [
        api_anon.post("/api/auth/token/", {"username": "bot", "password": "right-password"}).status_code
        for _ in range(11)
    ]
    assert codes[:10] == [200] * 10
    assert codes[10] == 429
    cache.clear()


def test_api_token_login_rejects_bad_credentials_with_400(api_anon, settings):
    cache.clear()
    response = api_anon.post("/api/auth/token/", {"username": "nobody", "password": "x"})
    assert response.status_code == 400
    assert "non_field_errors" in response.json()["errors"]
