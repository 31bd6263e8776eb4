from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class WorkflowsConfig(AppConfig):
    name = "workflows"
    verbose_name = "Workflows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate
        from django_q.signals import post_spawn

        from . import checks, shutdown  # noqa: F401 - checks register; the flag must exist before django-q2 forks
        from .roles import ensure_roles

        # Each installed app's workflows.py registers its @workflow functions.
        autodiscover_modules("workflows")
        post_spawn.connect(_start_timer, dispatch_uid="durable-timer")
        # After auth has created the permissions (apps migrate in INSTALLED_APPS order).
        post_migrate.connect(ensure_roles, sender=self, dispatch_uid="durable-roles")


def _start_timer(sender: object, proc_name: str, **kwargs: object) -> None:
    """Sent by django-q2 in every new worker process: each runs a timer thread and a
    heartbeat that keeps the leases of its runs."""
    from .leases import start_heartbeat
    from .timers import start_timer_thread

    start_heartbeat()
    start_timer_thread()
