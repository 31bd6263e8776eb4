"""Deleting finished instances: by age (the cluster, `manage.py workflows purge`) or one at
once (`inst.delete()`), each with its steps, attempts and events.

Deletes run in batches of BATCH instances, each its own short transaction that locks
only the instances it deletes (SKIP LOCKED on PostgreSQL, so several clusters share the
work), so purging a million rows never holds a long lock on the tables the console and
the runs use.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import QuerySet

from . import clock, counts
from .conf import setting
from .definition import positive_duration, registered_workflows, workflow_options
from .models import FINISHED_STATUSES, ConsumerCount, Delivery, Event, FailedMessage, Instance, Step, StepRun
from .signals import instances_deleted

BATCH = 500


def default_retention() -> timedelta:
    return positive_duration(setting("RETENTION"), what="DURABLE_RETENTION")


def delete_rows(instance_ids: list[str]) -> None:
    """Delete these instances (locked by the caller's transaction) and everything recorded
    of them, children before parents, and take them off the settled counts."""
    instances = Instance.objects.filter(pk__in=instance_ids)
    counts.forget(instances.values_list("workflow", "status", "finished_at"))
    Event.objects.filter(instance_id__in=instance_ids).delete()
    StepRun.objects.filter(step__instance_id__in=instance_ids).delete()
    Step.objects.filter(instance_id__in=instance_ids).only("pk").delete()
    instances.only("pk").delete()
    instances_deleted.send(sender=None, instance_ids=list(instance_ids))


def purge(finished: QuerySet[Instance]) -> int:
    """Delete the finished instances of `finished`, batch by batch; returns how many."""
    deleted = 0
    while True:
        count = _delete_batch(finished)
        deleted += count
        if count < BATCH:
            return deleted


def purge_expired(*, now: datetime | None = None) -> int:
    """One batch of instances past their retention (the cluster calls this now and then;
    a full batch means more are due), and of the records of webhook deliveries and queue
    messages received (or last failed) before the default retention."""
    now = now or clock.now()
    purge_deliveries(now=now)
    ConsumerCount.objects.filter(minute__lt=now - CONSUMER_COUNTS_KEPT).delete()
    # A failed message's count outlives it only when it went missing from its queue.
    FailedMessage.objects.filter(failed_at__lt=now - default_retention()).delete()
    return _delete_batch(expired(now))


# The console shows the last hour of each consumer's per-minute counts.
CONSUMER_COUNTS_KEPT = timedelta(days=1)

# Delivery rows are small and reference nothing: many go in one statement.
DELIVERY_BATCH = 10 * BATCH


def purge_deliveries(*, now: datetime) -> int:
    """Forget up to DELIVERY_BATCH applied deliveries older than DURABLE_RETENTION (a
    sender retrying later than that would act again); returns how many."""
    old = Delivery.objects.filter(received_at__lt=now - default_retention()).order_by("received_at")
    ids = list(old.values_list("pk", flat=True)[:DELIVERY_BATCH])
    Delivery.objects.filter(pk__in=ids).delete()
    return len(ids)


def expired(now: datetime) -> QuerySet[Instance]:
    """Finished instances older than their workflow's retention."""
    default = now - default_retention()
    own = {name: workflow_options(name).retention for name in registered_workflows()}
    own = {name: now - length for name, length in own.items() if length is not None}
    finished = Instance.objects.filter(status__in=FINISHED_STATUSES)
    due = finished.filter(finished_at__lt=default).exclude(workflow__in=own)
    for name, cutoff in own.items():
        due = due | finished.filter(workflow=name, finished_at__lt=cutoff)
    return due


def older_than(length: timedelta, *, now: datetime | None = None) -> QuerySet[Instance]:
    return Instance.objects.filter(
        status__in=FINISHED_STATUSES, finished_at__lt=(now or clock.now()) - length
    )


def _delete_batch(finished: QuerySet[Instance]) -> int:
    with transaction.atomic():
        ids = list(
            finished.filter(status__in=FINISHED_STATUSES)
            .select_for_update(skip_locked=True)
            .order_by("finished_at")
            .values_list("pk", flat=True)[:BATCH]
        )
        if ids:
            delete_rows(ids)
    return len(ids)
