"""An approval request: what a workflow asks, who may answer, and the answer (the audit trail)."""

import json

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse


class ApprovalRequest(models.Model):
    """One question from one workflow instance, decided once by one allowed person."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired"
        CANCELLED = "cancelled", "Cancelled"

    # The workflow instance's id; not a foreign key: approvals uses workflows' public API only.
    instance_id = models.CharField(max_length=100)
    name = models.CharField(max_length=200, help_text="The name given to request_approval in the workflow.")
    title = models.CharField(max_length=300)
    details = models.JSONField(default=dict, blank=True)
    # ["group:finance", "user:alice"]: who may decide (superusers may too).
    approvers = models.JSONField(default=list)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField()
    deadline = models.DateTimeField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="approval_decisions",
    )
    # Kept beside the foreign key so the audit trail outlives a deleted user.
    decided_by_username = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    comment = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "-created_at"], name="approval_inbox_idx"),
            models.Index(fields=["instance_id", "name"], name="approval_instance_idx"),
        ]
        constraints = [
            # request_approval's step may run again after a crash: it reuses the pending row.
            models.UniqueConstraint(
                fields=["instance_id", "name"],
                condition=Q(status="pending"),
                name="approval_one_pending_per_instance_and_name",
            )
        ]
        permissions = [("decide_approvalrequest", "Can decide approval requests")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("approvals:detail", args=[self.pk])

    @property
    def event_type(self) -> str:
        """The type of the event that carries the decision to the waiting instance."""
        return f"approval:{self.pk}"

    def detail_pairs(self) -> list[tuple[str, str]]:
        """The details as (key, text) pairs for display; a non-dict is one unnamed value."""
        if not isinstance(self.details, dict):
            return [("", _as_text(self.details))]
        return [(str(key), _as_text(value)) for key, value in self.details.items()]


def _as_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class Approver(models.Model):
    """One entry of a request's approvers, as a row, so the inbox can ask the database
    for "the requests naming me or one of my groups" (a JSON list cannot be searched
    that way on SQLite). Written with the request; `ApprovalRequest.approvers` keeps the
    list as it was given, for display."""

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="approver_entries")
    principal = models.CharField(max_length=200)  # "user:alice" or "group:finance"

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["request", "principal"], name="approver_unique_per_request")
        ]
        indexes = [models.Index(fields=["principal", "request"], name="approver_principal_idx")]

    def __str__(self) -> str:
        return f"{self.principal} for #{self.request_id}"
