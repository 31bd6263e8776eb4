from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class WorkflowsConfig(AppConfig):
    name = "workflows"
    verbose_name = "Workflows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        # Each installed app's workflows.py registers its @workflow functions.
        autodiscover_modules("workflows")
        post_spawn.connect(_start_timer, dispatch_uid="durable-timer")


def _start_timer(sender: object, proc_name: str, **kwargs: object) -> None:
    """Sent by django-q2 in every new worker process: each runs a timer thread."""
    from .timers import start_timer_thread

    start_timer_thread()
