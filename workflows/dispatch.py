"""Handing a run to django-q2. django-q2 only delivers work; our tables decide what runs."""

from django_q.tasks import async_task

from .broker import RUN_TASK


def enqueue_run(instance_id: str) -> None:
    """Queue a run of the instance.

    Call inside the transaction that made the instance runnable: with the ORM broker on
    the same database, the task commits or rolls back with that change, and so does the
    NOTIFY that wakes an idle cluster at once (broker.DurableBroker.enqueue).
    """
    async_task(RUN_TASK, instance_id)
