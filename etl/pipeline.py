"""The pipeline's step registry.

`etl` never imports the other apps: each registers its step here from its
`AppConfig.ready()`, and the orchestrator runs whatever is registered, in
`order`. Adding a step is one `register_step(...)` call.

Canonical orders: bootstrap 10, import 20, sync 30, correct 40, enrich 50,
features 60, validate 70.

A step is `run(*, options: dict, progress: ProgressReporter | None) -> dict`:
it reads the options it knows (e.g. `path` for import), does its work through
its app's service, and returns a JSON-able dict of counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

StepFunc = Callable[..., dict[str, Any]]


@dataclass(frozen=True, slots=True)
class PipelineStep:
    name: str
    order: int
    run: StepFunc
    description: str = ""
    # Whether the step runs when the caller names no steps.
    default: bool = True


_REGISTRY: dict[str, PipelineStep] = {}


def register_step(name: str, *, order: int, run: StepFunc, description: str = "", default: bool = True) -> PipelineStep:
    step = PipelineStep(name=name, order=order, run=run, description=description, default=default)
    _REGISTRY[name] = step
    return step


def registered_steps() -> list[PipelineStep]:
    return sorted(_REGISTRY.values(), key=lambda s: (s.order, s.name))


def get_step(name: str) -> PipelineStep | None:
    return _REGISTRY.get(name)
