"""Concurrency limits: `@workflow(name, concurrency=N, concurrency_key=fn)` lets at most N
instances of the workflow (per key) execute steps at once; the others stay `queued`,
first come first served. Waiting, paused and finished instances do not count.

A claim of a limited instance locks its group's row and admits it only if the running
instances of the group and the queued ones created before it leave it a slot; otherwise
the claim is rolled back and the instance stays queued. When one of the group stops
running (it waits, finishes, is paused or handed back), a run of the oldest queued one
is queued, so slots are taken in order of creation.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q

from .definition import registered_workflows, workflow_options
from .dispatch import enqueue_run
from .models import ConcurrencyGroup, Instance, Status

MAX_KEY = 200


def limited() -> dict[str, int]:
    """{workflow name: its limit} of the registered workflows that have one."""
    limits = {name: workflow_options(name).concurrency for name in registered_workflows()}
    return {name: limit for name, limit in limits.items() if limit}


def key_for(workflow: str, params: Any) -> str:
    """The concurrency key of a new instance of `workflow` ("" when the limit is per workflow)."""
    function = workflow_options(workflow).concurrency_key
    if function is None:
        return ""
    try:
        key = str(function(params))
    except Exception as exc:
        raise ValueError(
            f'workflow "{workflow}": concurrency_key failed on these params: {type(exc).__name__}: {exc}'
        ) from None
    if len(key) > MAX_KEY or "\x00" in key:
        raise ValueError(
            f'workflow "{workflow}": concurrency_key returned {key[:50]!r}..., too long or with NUL'
        )
    return key


def admits(instance: Instance, limit: int) -> bool:
    """In the claim's transaction, with `instance` just marked running: may it run?"""
    group = Instance.objects.filter(workflow=instance.workflow, concurrency_key=instance.concurrency_key)
    ConcurrencyGroup.objects.get_or_create(workflow=instance.workflow, key=instance.concurrency_key)
    ConcurrencyGroup.objects.select_for_update().get(workflow=instance.workflow, key=instance.concurrency_key)
    running = group.filter(status=Status.RUNNING).exclude(pk=instance.pk).count()
    older = Q(created_at__lt=instance.created_at) | Q(created_at=instance.created_at, id__lt=instance.id)
    ahead = group.filter(older, status=Status.QUEUED).count()
    return running + ahead < limit


def slot_freed(instance: Instance) -> None:
    """`instance` stopped running: queue a run of its group's oldest queued instance."""
    if instance.workflow not in limited():
        return
    oldest = (
        Instance.objects.filter(
            workflow=instance.workflow, concurrency_key=instance.concurrency_key, status=Status.QUEUED
        )
        .exclude(pk=instance.pk)
        .order_by("created_at", "id")
        .values_list("id", flat=True)
        .first()
    )
    if oldest is not None:
        enqueue_run(oldest)
