"""Helpers the admin classes of every app share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from etl.errors import DomainError


def admin_each(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    call: Callable[[Model], Any],
    done: str,
    *,
    label: str | None = None,
    refused_level: int = messages.ERROR,
) -> None:
    """Run `call` (one service call) on each selected object and report each outcome.
    `done` is formatted with `r` (the service's result) and `obj`; a DomainError is
    shown with its message and does not stop the others."""
    name = label or model_admin.model._meta.verbose_name.capitalize()
    for obj in queryset:
        try:
            outcome = call(obj)
        except DomainError as exc:
            model_admin.message_user(request, f"{name} {obj.pk}: {exc.message}", refused_level)
        else:
            model_admin.message_user(request, f"{name} {obj.pk}: {done.format(r=outcome, obj=obj)}", messages.SUCCESS)


class RecordAdmin(admin.ModelAdmin):
    """Admin of a record of what was done (a run, a backup, an audit row, a dead
    letter, a log line): nobody deletes one by hand, not even a superuser. Rows
    go only through their services' actions, and old ones through the retention
    schedule's rules (etl.services.retention)."""

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions
