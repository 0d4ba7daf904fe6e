"""Reads need an authenticated user; writes need staff with the model permission."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import SAFE_METHODS, BasePermission


class StaffWithPermission(BasePermission):
    """For action endpoints: safe methods for any authenticated user, anything
    else for staff holding every permission in the view's `required_perms`."""

    message = _("This action needs a staff user with the matching permission.")

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in SAFE_METHODS and not getattr(view, "perms_for_reads", False):
            return True
        perms = getattr(view, "required_perms", ())
        return bool(user.is_staff and user.has_perms(perms))
