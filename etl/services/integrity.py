"""Data-integrity snapshots: the indicators stored over time for the trends."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext, pgettext_lazy

from etl.errors import DomainError
from etl.models import IntegritySnapshot
from etl.selectors import integrity_status

SNAPSHOT_FIELDS = (
    "candles",
    "candles_without_symbol",
    "symbol_coverage",
    "asset_class_consistency",
    "enrichment_coverage",
    "overall_quality",
)


def integrity_snapshot_take(*, at: datetime | None = None) -> int:
    """Store the current indicators, overall and per market; returns rows written."""
    at = at or timezone.now()
    status = integrity_status()
    rows = [IntegritySnapshot(taken_at=at, market="", **{f: status["overall"][f] for f in SNAPSHOT_FIELDS})]
    rows += [
        IntegritySnapshot(taken_at=at, market=code, **{f: values[f] for f in SNAPSHOT_FIELDS})
        for code, values in status["markets"].items()
    ]
    IntegritySnapshot.objects.bulk_create(rows)
    return len(rows)


def prune_integrity_snapshots(cutoff) -> int:
    return IntegritySnapshot.objects.filter(taken_at__lt=cutoff).delete()[0]


# ---------------------------------------------------------------------------
# Quality gates: the validate step's blocking checks (like Dagster's asset checks).
# A breached `error` gate fails the step and the run; a breached `warning` gate
# ends the run "succeeded with warnings"; `off` is not checked.

SEVERITIES = ("error", "warning", "off")
SEVERITY_LABELS = {
    "error": pgettext_lazy("gate severity", "error"),
    "warning": pgettext_lazy("gate severity", "warning"),
    "off": pgettext_lazy("gate severity", "off"),
}


# integrity_status()["status"]: the machine word stays in the API; operators read these.
VERDICT_LABELS = {
    "healthy": pgettext_lazy("integrity verdict", "healthy"),
    "attention": pgettext_lazy("integrity verdict", "attention"),
}


def verdict_label(verdict: str) -> str:
    """The integrity verdict (healthy / attention) in the operator's language."""
    return str(VERDICT_LABELS.get(verdict, verdict))


def severity_label(severity: str) -> str:
    """A gate's severity in the operator's language."""
    return str(SEVERITY_LABELS.get(severity, severity))


Indicator = Callable[[], float | None]
_INDICATORS: dict[str, Indicator] = {}


def register_indicator(name: str, read: Indicator) -> None:
    """Let an app supply an indicator a gate reads (e.g. candle completeness, 0-1)."""
    _INDICATORS[name] = read


@dataclass(frozen=True, slots=True)
class Gate:
    name: str
    indicator: str
    op: str  # "==" or ">="
    threshold: float
    severity: str


@dataclass(frozen=True, slots=True)
class GateResult:
    name: str
    indicator: str
    op: str
    threshold: float
    severity: str
    value: float | None
    passed: bool | None  # None: not measured (no data to judge)

    @property
    def breached(self) -> bool:
        return self.passed is False and self.severity != "off"

    def describe(self) -> str:
        return f"quality gate {self.name} breached: {self.value} (needs {self.op} {self.threshold:g})"


@dataclass(frozen=True, slots=True)
class GateReport:
    gates: list[GateResult]

    @property
    def errors(self) -> list[GateResult]:
        return [g for g in self.gates if g.breached and g.severity == "error"]

    @property
    def warnings(self) -> list[GateResult]:
        return [g for g in self.gates if g.breached and g.severity == "warning"]

    @property
    def outcome(self) -> str:
        return "failed" if self.errors else "warning" if self.warnings else "passed"

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "gates": [{**asdict(g), "breached": g.breached} for g in self.gates]}


def quality_gates_default() -> list[Gate]:
    """The thresholds the old guides name, with the severities of the
    QUALITY_GATE_SEVERITY setting over the defaults."""
    defaults = [
        Gate("candles_without_symbol", "candles_without_symbol", "==", 0, "error"),
        Gate("symbol_coverage", "symbol_coverage", ">=", 90.0, "error"),
        Gate("asset_class_consistency", "asset_class_consistency", "==", 100.0, "error"),
        Gate("enrichment_coverage", "enrichment_coverage", ">=", 70.0, "warning"),
        Gate("overall_quality", "overall_quality", ">=", 75.0, "warning"),
        # The settings are fractions (0.85), the symbols' scores 0-100.
        Gate("min_quality_score", "mean_symbol_quality_score", ">=", settings.MIN_QUALITY_SCORE * 100, "warning"),
        Gate("min_data_completeness", "data_completeness", ">=", settings.MIN_DATA_COMPLETENESS, "warning"),
    ]
    return [replace(g, severity=settings.QUALITY_GATE_SEVERITY.get(g.name, g.severity)) for g in defaults]


def _severities(overrides: dict[str, Any] | None) -> dict[str, str]:
    """A run's own severities (pipeline option `gates`), checked."""
    known = {g.name for g in quality_gates_default()}
    out = {}
    for name, severity in (overrides or {}).items():
        if name not in known:
            raise DomainError(
                gettext("gates: unknown quality gate %(gate)s; known: %(known)s")
                % {"gate": repr(name), "known": sorted(known)},
                code="unknown_gate",
            )
        if severity not in SEVERITIES:
            raise DomainError(
                gettext("gates.%(gate)s: severity must be one of %(severities)s")
                % {"gate": name, "severities": list(SEVERITIES)},
                code="invalid_gate",
            )
        out[name] = severity
    return out


def quality_gates_check(*, overall: dict[str, Any], overrides: dict[str, Any] | None = None) -> GateReport:
    """Check every gate against the overall indicators of `integrity_status()`
    (and the registered ones); `overrides` maps gate names to a severity for this run."""
    severities = _severities(overrides)
    results = []
    for gate in quality_gates_default():
        read = _INDICATORS.get(gate.indicator)
        value = read() if read is not None else overall.get(gate.indicator)
        passed = None
        if value is not None:
            passed = value == gate.threshold if gate.op == "==" else value >= gate.threshold
        severity = severities.get(gate.name, gate.severity)
        results.append(GateResult(gate.name, gate.indicator, gate.op, gate.threshold, severity, value, passed))
    return GateReport(results)
