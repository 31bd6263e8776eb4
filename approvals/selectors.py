"""Reading approval requests: who may decide what, the inbox and its history."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Exists, OuterRef

import workflows

from .models import ApprovalRequest, Approver
from .roles import DECIDE_PERMISSION

HISTORY_LIMIT = 100
INBOX_LIMIT = 200


def may_decide(*, user: AbstractBaseUser | AnonymousUser, request: ApprovalRequest) -> bool:
    """Whether `user` is one of the request's approvers: named, in a named group, or a superuser.

    Says nothing about the request's status: a decided request is refused by decide().
    """
    if not user.is_authenticated or not user.is_active:
        return False
    return user.is_superuser or not set(_principals(user)).isdisjoint(request.approvers)


def request_for_user(*, user: AbstractBaseUser | AnonymousUser, request_id: int) -> ApprovalRequest | None:
    """The request if `user` may decide it; None both when it does not exist and when they
    may not, so that nobody learns which request ids exist by trying them."""
    request = ApprovalRequest.objects.filter(pk=request_id).first()
    if request is None or not may_decide(user=user, request=request):
        return None
    return request


def may_use_inbox(*, user: AbstractBaseUser | AnonymousUser) -> bool:
    """Approvers use the inbox: the Approvers group (the decide permission), superusers,
    and anyone a request names, alone or through a group (they are emailed a link to it)."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.has_perm(DECIDE_PERMISSION):
        return True
    return Approver.objects.filter(principal__in=_principals(user)).exists()


def pending_for_user(
    *, user: AbstractBaseUser | AnonymousUser, limit: int = INBOX_LIMIT
) -> list[ApprovalRequest]:
    """Pending requests, not past their deadline, that `user` may decide; newest first."""
    pending = ApprovalRequest.objects.filter(
        status=ApprovalRequest.Status.PENDING, deadline__gt=workflows.now()
    ).order_by("-created_at", "-id")
    return _decidable_by(user, pending, limit=limit)


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


def _decidable_by(user, requests, *, limit: int) -> list[ApprovalRequest]:
    if not user.is_authenticated or not user.is_active:
        return []
    if not user.is_superuser:
        requests = requests.filter(
            Exists(Approver.objects.filter(request=OuterRef("pk"), principal__in=_principals(user)))
        )
    return list(requests[:limit])


def _principals(user: AbstractBaseUser) -> list[str]:
    """How requests may name the user: "user:NAME", or "group:NAME" for each of their groups."""
    return [f"user:{user.get_username()}"] + [
        f"group:{name}" for name in user.groups.values_list("name", flat=True)
    ]
