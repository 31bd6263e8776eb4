from django.contrib import admin
from django.http import HttpRequest

from .models import ApprovalRequest


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(admin.ModelAdmin):
    """Read-only: the requests are the audit trail; decide in the inbox."""

    list_display = ["id", "title", "status", "instance_id", "created_at", "decided_by_username", "decided_at"]
    list_filter = ["status"]
    search_fields = ["title", "instance_id", "name", "decided_by_username"]
    ordering = ["-created_at", "-id"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ApprovalRequest | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ApprovalRequest | None = None) -> bool:
        return False
