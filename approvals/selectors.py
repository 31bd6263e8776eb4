"""Reading approval requests: who may decide what, the inbox and its history."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.utils import timezone

from .models import ApprovalRequest

HISTORY_LIMIT = 100


def may_decide(*, user: AbstractBaseUser | AnonymousUser, request: ApprovalRequest) -> bool:
    """Whether `user` is one of the request's approvers: named, in a named group, or a superuser.

    Says nothing about the request's status: a decided request is refused by decide().
    """
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    if f"user:{user.get_username()}" in request.approvers:
        return True
    named_groups = {entry.removeprefix("group:") for entry in request.approvers if entry.startswith("group:")}
    return bool(named_groups) and user.groups.filter(name__in=named_groups).exists()


def pending_for_user(*, user: AbstractBaseUser | AnonymousUser) -> list[ApprovalRequest]:
    """Pending requests, not past their deadline, that `user` may decide; newest first."""
    pending = ApprovalRequest.objects.filter(
        status=ApprovalRequest.Status.PENDING, deadline__gt=timezone.now()
    ).order_by("-created_at", "-id")
    return _decidable_by(user, pending, limit=None)


def history_for_user(
    *, user: AbstractBaseUser | AnonymousUser, limit: int = HISTORY_LIMIT
) -> list[ApprovalRequest]:
    """Decided, expired and cancelled requests `user` may see (superusers: all); newest first."""
    finished = (
        ApprovalRequest.objects.exclude(status=ApprovalRequest.Status.PENDING)
        .select_related("decided_by")
        .order_by("-created_at", "-id")
    )
    return _decidable_by(user, finished, limit=limit)


def _decidable_by(user, requests, *, limit: int | None) -> list[ApprovalRequest]:
    # Approvers are a JSON list, and JSON containment is not portable to SQLite, so the
    # match is made here. The user's groups are loaded once.
    if not user.is_authenticated or not user.is_active:
        return []
    if user.is_superuser:
        return list(requests if limit is None else requests[:limit])
    group_names = user.groups.values_list("name", flat=True)
    mine = {f"user:{user.get_username()}"} | {f"group:{name}" for name in group_names}
    found = []
    for request in requests.iterator(chunk_size=500):
        if mine.intersection(request.approvers):
            found.append(request)
            if limit is not None and len(found) >= limit:
                break
    return found
