"""Signals other apps may listen to (public API). Pure Django signals, no models.

instance_finished(sender=None, instance_id: str, status: str): an instance completed,
errored or was terminated. Sent inside the transaction that records it, so what a
receiver writes commits, or rolls back, with the instance's new status.

instances_deleted(sender=None, instance_ids: list[str]): finished instances were deleted
(retention, `purge`, `inst.delete()`), in the transaction that deletes them.
"""

from django.dispatch import Signal

instance_finished = Signal()
instances_deleted = Signal()
