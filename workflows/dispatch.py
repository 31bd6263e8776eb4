"""Handing a run to django-q2. django-q2 only delivers work; our tables decide what runs."""

from django_q.tasks import async_task

from .broker import CALL_TASK, RUN_TASK


def enqueue_run(instance_id: str) -> None:
    """Queue a run of the instance.

    Call inside the transaction that made the instance runnable: with the ORM broker on
    the same database, the task commits or rolls back with that change, and so does the
    NOTIFY that wakes an idle cluster at once (broker.DurableBroker.enqueue).
    """
    async_task(RUN_TASK, instance_id)


def enqueue_call(step_id: int) -> None:
    """Queue a task for one parallel call (calls.py); inside the transaction that queued it."""
    async_task(CALL_TASK, step_id)
