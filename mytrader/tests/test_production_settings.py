"""Production settings: refusing to start half-configured, mail, probes over
plain HTTP, who may read /metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {"DEBUG": "off", "SECRET_KEY": "k3y-" + "x7Qp9Lz2" * 8, "ALLOWED_HOSTS": "data.example.com"}


def _settings_in_child(code: str, **env: str | None) -> subprocess.CompletedProcess:
    """Load the settings in a fresh interpreter with `env` on top of ours (None: unset), then run `code`."""
    environment = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-c", "import mytrader.settings as s\n" + code],
        cwd=ROOT,
        env={name: value for name, value in environment.items() if value is not None},
        capture_output=True,
        text=True,
    )


def test_production_refuses_to_start_without_a_database_url():
    done = _settings_in_child("", **PRODUCTION, DATABASE_URL=None)
    assert done.returncode != 0
    assert "DATABASE_URL must be set when DEBUG is off" in done.stderr


def test_development_without_a_database_url_still_uses_the_embedded_server():
    done = _settings_in_child("print(s.DATABASES['default']['ENGINE'])", DEBUG="on", DATABASE_URL=None)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "mytrader.db.embedded"


def test_email_url_sets_the_smtp_server_and_the_sender():
    done = _settings_in_child(
        "import json; print(json.dumps([s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_HOST_USER,"
        " s.EMAIL_HOST_PASSWORD, s.EMAIL_USE_TLS, s.DEFAULT_FROM_EMAIL, s.SERVER_EMAIL]))",
        **PRODUCTION,
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres",
        EMAIL_URL="smtp+tls://alerts%40example.com:s3cret@mail.example.com:587",
        DEFAULT_FROM_EMAIL="data@example.com",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        "django.core.mail.backends.smtp.EmailBackend",
        "mail.example.com",
        587,
        "alerts@example.com",
        "s3cret",
        True,
        "data@example.com",
        "data@example.com",  # the alert sender follows the sender unless set
    ]


def test_an_unwritable_numba_cache_stops_the_start_with_its_name():
    done = _settings_in_child("", DEBUG="on", NUMBA_CACHE_DIR="/proc/no-such-dir/numba")
    assert done.returncode != 0
    assert "NUMBA_CACHE_DIR=/proc/no-such-dir/numba cannot be created" in done.stderr


def test_the_numba_cache_is_handed_to_numba(tmp_path):
    done = _settings_in_child(
        "import os; print(os.environ['NUMBA_CACHE_DIR'])", DEBUG="on", NUMBA_CACHE_DIR=str(tmp_path / "kernels")
    )
    assert done.stdout.strip() == str(tmp_path / "kernels")
    assert (tmp_path / "kernels").is_dir()


def test_a_malformed_metrics_network_stops_the_start():
    done = _settings_in_child("", DEBUG="on", METRICS_ALLOWED_NETWORKS="10.0.0.0/8,not-a-network")
    assert done.returncode != 0
    assert "METRICS_ALLOWED_NETWORKS" in done.stderr


def test_probes_over_plain_http_are_not_redirected(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/admin/login/").status_code == 301
    assert client.get("/api/etl/health").status_code in (200, 503)
    assert client.get("/metrics").status_code == 200


def test_metrics_are_refused_to_an_address_outside_the_allowed_networks(client):
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.7")
    assert response.status_code == 403
    assert b"django_http" not in response.content


def test_metrics_are_served_from_an_allowed_network(client, settings):
    settings.METRICS_ALLOWED_NETWORKS = ["10.20.0.0/16"]
    assert client.get("/metrics", REMOTE_ADDR="10.20.3.4").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


def test_metrics_are_served_to_a_scraper_with_the_token(client, settings):
    settings.METRICS_TOKEN = "scrape-token-123"
    outside = {"REMOTE_ADDR": "203.0.113.7"}
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-123", **outside).status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong", **outside).status_code == 403
    assert client.get("/metrics", **outside).status_code == 403


def test_no_token_configured_accepts_no_token(client, settings):
    settings.METRICS_TOKEN = ""
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer ", REMOTE_ADDR="203.0.113.7")
    assert response.status_code == 403
