"""The Prometheus rules agree with what the application exports and with the
Alertmanager routes: real run kinds, a severity the routes know, the text
every notification shows, and every metric explained in docs/alerting.md.
(What each rule does is promtool-tested: `make alerts-test`.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from django.apps import apps

from etl.metrics import run_kind
from etl.models import RunRecord

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "ops" / "prometheus" / "alerts.yml"
ROUTED_SEVERITIES = {"critical", "warning"}  # ops/alertmanager/alertmanager.yml


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES_FILE.read_text())["groups"] for rule in group["rules"]]


def kinds_named(expr: str) -> set[str]:
    named = set(re.findall(r'kind="([^"]+)"', expr))
    for alternatives in re.findall(r'kind=~"([^"]+)"', expr):
        named |= set(alternatives.split("|"))
    return named


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_every_rule_names_only_run_kinds_that_exist(rule):
    exported = {run_kind(model) for model in apps.get_models() if issubclass(model, RunRecord)}
    assert kinds_named(rule["expr"]) <= exported


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_every_rule_has_a_routed_severity_and_says_what_happened(rule):
    assert rule["labels"]["severity"] in ROUTED_SEVERITIES
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_every_metric_the_rules_read_is_explained_in_the_alerting_guide():
    guide = (ROOT / "docs" / "alerting.md").read_text()
    read = set(re.findall(r"\b(mytrader_[a-z_]+)", RULES_FILE.read_text()))
    # Histogram and counter series are documented under their family name.
    families = {re.sub(r"_(bucket|count|sum)$", "", name) for name in read}
    assert sorted(name for name in families if f"`{name}" not in guide) == []


def test_every_rule_is_listed_in_the_alerting_guide():
    guide = (ROOT / "docs" / "alerting.md").read_text()
    assert sorted(rule["alert"] for rule in rules() if f"`{rule['alert']}`" not in guide) == []
