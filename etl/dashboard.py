"""The admin landing page is a dashboard made of panels.

`etl` never imports the other apps: each registers its panels here from its
`AppConfig.ready()` (like pipeline steps). A panel is a template and a function
that returns its context; one failing panel shows its error and never breaks
the page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.template.loader import render_to_string

log = logging.getLogger(__name__)

PanelContext = Callable[[HttpRequest], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Panel:
    name: str
    title: str
    order: int
    template: str
    context: PanelContext


_PANELS: dict[str, Panel] = {}


def register_panel(name: str, *, title: str, order: int, template: str, context: PanelContext) -> None:
    _PANELS[name] = Panel(name=name, title=title, order=order, template=template, context=context)


def registered_panels() -> list[Panel]:
    return sorted(_PANELS.values(), key=lambda p: (p.order, p.name))


def panels_render(request: HttpRequest) -> list[dict[str, str]]:
    """Each panel's HTML; a panel that raises renders its error instead."""
    rendered = []
    for panel in registered_panels():
        try:
            context = {"panel": panel, **panel.context(request)}
            html = render_to_string(panel.template, context, request=request)
        except Exception as exc:  # a broken panel must not take the console down
            log.exception("dashboard panel %s failed", panel.name)
            html = render_to_string(
                "admin/dashboard/panel_error.html", {"panel": panel, "error": str(exc)}, request=request
            )
        rendered.append({"name": panel.name, "html": html})
    return rendered
