"""Creating instances: the checks of the workflow, ids and params, and the insert that
queues each one's first run. services.create_instances (the web, the command line, the
Python API) and a run starting a child (step.run_workflow) both come here.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from django.db import IntegrityError, transaction

from . import clock, concurrency, lifecycle
from .definition import get_workflow
from .errors import InstanceExists
from .models import Instance, Status
from .names import checked_instance_id
from .payloads import to_json_value

# Instances created in one batch (one transaction): past this, send several batches.
MAX_BATCH = 1000


def create(*, workflow: str, items: list[dict[str, Any]], parent_id: str = "") -> list[Instance]:
    """Create and queue instances of `workflow`, all or none.

    Each item is {"params": JSON value, "id": optional str}. `parent_id`: they are children
    of that instance (step.run_workflow, step.start_workflow).
    """
    get_workflow(workflow)
    if not isinstance(items, list | tuple):
        raise ValueError(f"instances to create must be a list of dicts, got {type(items).__name__}")
    if len(items) > MAX_BATCH:
        raise ValueError(f"at most {MAX_BATCH:,} instances can be created in one batch, got {len(items):,}")
    now = clock.now()
    instances = []
    for position, item in enumerate(items):
        if not isinstance(item, dict) or set(item) - {"params", "id"}:
            raise ValueError(
                f'item {position} must be a dict with "params" and optionally "id", got {item!r}'
            )
        instance_id = _checked_instance_id(item.get("id"))
        params = to_json_value(item.get("params"), what=f'params of instance "{instance_id}"')
        instances.append(
            Instance(
                id=instance_id,
                workflow=workflow,
                params=params,
                status=Status.QUEUED,
                created_at=now,
                updated_at=now,
                parent_id=parent_id,
                concurrency_key=concurrency.key_for(workflow, params),
            )
        )
    ids = [instance.id for instance in instances]
    repeated = sorted(i for i, times in Counter(ids).items() if times > 1)
    if repeated:
        raise InstanceExists(f"instance id(s) given more than once: {', '.join(repeated)}")
    try:
        with transaction.atomic():
            taken = sorted(Instance.objects.filter(pk__in=ids).values_list("id", flat=True))
            if taken:
                raise InstanceExists(f"instance id(s) already taken: {', '.join(taken)}")
            lifecycle.start(instances)
    except IntegrityError:  # created meanwhile by a concurrent call: which ones is not known here
        shown = ", ".join(ids[:10]) + (", ..." if len(ids) > 10 else "")
        raise InstanceExists(f"one or more of the instance ids were taken meanwhile: {shown}") from None
    return instances


def create_one(
    *, workflow: str, params: Any = None, instance_id: str | None = None, parent_id: str = ""
) -> Instance:
    """Create and queue one instance of `workflow`."""
    item: dict[str, Any] = {"params": params}
    if instance_id is not None:
        item["id"] = instance_id
    return create(workflow=workflow, items=[item], parent_id=parent_id)[0]


def _checked_instance_id(value: Any) -> str:
    return uuid.uuid4().hex if value is None else checked_instance_id(value)
