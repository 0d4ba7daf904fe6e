"""The container files: what compose runs is what the README tells production
to run, and the image is built the way docs/deploy.md says."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _production_commands() -> set[str]:
    """Every backquoted command of the README's "Production" section."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Production\n") :]
    section = section[: section.index("\n## ", 1)]
    return {command for command in re.findall(r"`([^`]+)`", section.replace("\n  ", " "))}


def _command(service: str) -> str:
    command = COMPOSE["services"][service]["command"]
    if command[:2] == ["sh", "-c"]:
        return command[2]
    return shlex.join(command)


def _dockerfile_cmd() -> list[str]:
    return json.loads(re.search(r"^CMD (\[.*\])$", DOCKERFILE, re.M).group(1))


@pytest.mark.parametrize("service", ["web", "worker", "migrate"])
def test_compose_runs_the_readme_production_commands(service):
    assert _command(service) in _production_commands()


def test_the_image_starts_the_web_server_as_compose_does():
    assert shlex.join(_dockerfile_cmd()) == _command("web")


def test_collectstatic_at_build_is_the_readme_command():
    assert "python manage.py collectstatic --noinput" in _production_commands()
    assert "manage.py collectstatic --noinput" in DOCKERFILE


def test_the_image_is_multi_stage_non_root_and_checks_its_health():
    assert len(re.findall(r"^FROM ", DOCKERFILE, re.M)) >= 2
    user = re.findall(r"^USER (\S+)", DOCKERFILE, re.M)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*/api/etl/health", DOCKERFILE, re.M)
    assert "pip install --require-hashes -r /tmp/requirements.txt" in DOCKERFILE  # the runtime lock only


def test_compose_has_every_part_of_a_deployment():
    assert {"web", "worker", "migrate", "db", "redis", "prometheus", "alertmanager"} <= set(COMPOSE["services"])
    assert COMPOSE["services"]["db"]["image"].startswith("postgres:")


def test_prometheus_loads_the_shipped_rules_and_may_scrape_the_web_service():
    prometheus = COMPOSE["services"]["prometheus"]
    mounted = {volume.split(":")[0] for volume in prometheus["volumes"]}
    assert "./ops/prometheus/alerts.yml" in mounted
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == ["web:8000"]
    address = prometheus["networks"]["backend"]["ipv4_address"]
    allowed = COMPOSE["x-app"]["environment"]["METRICS_ALLOWED_NETWORKS"].split(",")
    assert f"{address}/32" in allowed


def test_compose_file_validates():
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose not found: install Debian's docker-compose")
    done = subprocess.run(
        [compose, "-f", "compose.yaml", "config", "-q"],
        cwd=ROOT,
        env={**os.environ, "SECRET_KEY": "check", "POSTGRES_PASSWORD": "check"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
