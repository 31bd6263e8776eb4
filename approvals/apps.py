from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Approvals"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from workflows.signals import instance_finished, instances_deleted

        from .roles import ensure_approvers_group
        from .services import cancel_pending_requests, delete_requests_of

        # After auth has created this app's permissions (its handler was connected first).
        post_migrate.connect(ensure_approvers_group, sender=self, dispatch_uid="durable-approvers")
        instance_finished.connect(cancel_pending_requests, dispatch_uid="durable-approvals-cancel")
        instances_deleted.connect(delete_requests_of, dispatch_uid="durable-approvals-delete")
