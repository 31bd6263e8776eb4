from django.contrib import admin

from .models import Event, Instance, Step, StepRun


class StepInline(admin.TabularInline):
    model = Step
    extra = 0
    fields = ["generation", "key", "kind", "status", "attempts", "wake_at", "result", "error"]
    readonly_fields = fields
    can_delete = False


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ["id", "workflow", "status", "created_at", "updated_at", "wake_at"]
    list_filter = ["status", "workflow"]
    search_fields = ["id"]
    ordering = ["-created_at", "-id"]
    inlines = [StepInline]
    readonly_fields = [f.name for f in Instance._meta.fields]

    def has_delete_permission(self, request, obj=None) -> bool:
        """Deleting goes through the console, `inst.delete()` or `workflows purge`, which
        also keep the workflows page's counts (counts.forget) and tell `instances_deleted`."""
        return False


@admin.register(StepRun)
class StepRunAdmin(admin.ModelAdmin):
    list_display = ["step", "attempt", "outcome", "started_at", "duration_ms", "error_type"]
    list_filter = ["outcome"]


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["instance", "type", "created_at", "consumed_at"]
