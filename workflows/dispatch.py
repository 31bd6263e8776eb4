"""Handing a run to django-q2. django-q2 only delivers work; our tables decide what runs."""

from django_q.tasks import async_task


def enqueue_run(instance_id: str) -> None:
    """Queue a run of the instance.

    Call inside the transaction that made the instance runnable: with the ORM broker on
    the same database, the task commits or rolls back with that change.
    """
    async_task("workflows.tasks.run_instance", instance_id)
