from __future__ import annotations

from django import template
from django.utils.safestring import mark_safe

from etl.dashboard import panels_render

register = template.Library()


@register.simple_tag(takes_context=True)
def dashboard_panels(context) -> str:
    request = context["request"]
    return mark_safe("".join(p["html"] for p in panels_render(request)))  # noqa: S308 (our own templates)
