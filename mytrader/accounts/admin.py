"""Each operator edits their own preferences; a superuser edits anyone's."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpResponseRedirect
from django.urls import reverse

from mytrader.accounts.models import OperatorPreference


@admin.register(OperatorPreference)
class OperatorPreferenceAdmin(admin.ModelAdmin):
    list_display = ("user", "language", "time_zone")
    actions = None

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else queryset.filter(user=request.user)

    def get_readonly_fields(self, request, obj=None):
        return () if request.user.is_superuser and obj is None else ("user",)

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None):
        return self.has_change_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        own = obj is None or obj.user_id == request.user.pk
        return request.user.is_active and request.user.is_staff and (own or request.user.is_superuser)

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    def changelist_view(self, request, extra_context=None):
        # An operator has one row: go straight to it (created on first visit).
        if request.user.is_superuser:
            return super().changelist_view(request, extra_context)
        preference, _ = OperatorPreference.objects.get_or_create(user=request.user)
        return HttpResponseRedirect(reverse("admin:accounts_operatorpreference_change", args=[preference.pk]))
