from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Approvals"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from .roles import ensure_approvers_group

        # After auth has created this app's permissions (its handler was connected first).
        post_migrate.connect(ensure_approvers_group, sender=self, dispatch_uid="durable-approvers")
