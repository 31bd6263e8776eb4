"""Bulk actions on every instance a console filter matches, not only one page's selection.

The set can be large, so it is never changed in one transaction: it is walked newest first
by keyset, a batch at a time, and each instance is changed by the same service call (and
in its own short transaction) as a single action. The caller keeps the cursor between
batches (the console's page posts batch after batch and draws the progress): a batch
that stops half way leaves every instance either done or untouched.

Instances changed by a batch may still match the filter (a paused instance, for a filter
without a status): the cursor, not the status, says where the next batch starts, so none
is acted on twice. Instances created after the first batch are newer than the cursor and
are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import QuerySet

from . import services
from .errors import InstanceNotFound, InvalidState
from .models import Action, Instance
from .selectors import InstanceFilters, encode_cursor, filtered_instances, newest_first

BATCH_SIZE = 100


def matching(*, filters: InstanceFilters, action: Action | str) -> QuerySet[Instance]:
    """The instances the filter matches whose status allows `action`."""
    return filtered_instances(filters).filter(status__in=Action(action).allowed_statuses)


def preview_count(*, filters: InstanceFilters, action: Action | str) -> int:
    """How many instances a bulk `action` on this filter would change (as of now)."""
    return matching(filters=filters, action=action).count()


@dataclass(frozen=True)
class Batch:
    done: int
    refused: list[str] = field(default_factory=list)  # why, for each instance refused
    next_cursor: str | None = None  # None: nothing is left after this batch


def run_batch(
    *, filters: InstanceFilters, action: Action | str, after: str | None = None, size: int | None = None
) -> Batch:
    """Apply `action` to the next `size` (BATCH_SIZE) matching instances after the cursor `after`."""
    action, size = Action(action), size or BATCH_SIZE
    rows = newest_first(matching(filters=filters, action=action), filters=filters, after=after)
    batch = list(rows.only("id", "created_at")[: size + 1])
    more = len(batch) > size
    batch = batch[:size]
    done, refused = 0, []
    for instance in batch:
        try:
            services.apply_lifecycle_action(instance_id=instance.id, action=action)
            done += 1
        except (InvalidState, InstanceNotFound) as exc:  # changed since it was read
            refused.append(str(exc))
    return Batch(done=done, refused=refused, next_cursor=encode_cursor(batch[-1]) if more else None)
