"""Human approvals: a workflow asks, a person decides in the inbox, the workflow goes on.

    from approvals import request_approval

    decision = request_approval(step, "refund sign-off", title="Refund 420 EUR for order 42?",
                                details={"order": 42}, approvers=["group:finance", "user:alice"],
                                timeout="3 days")
    # {"approved": bool, "by": "alice", "comment": str, "decided_at": ISO-8601 str}

The public API is re-exported here; this module is imported while apps load, so it
imports the ORM only inside functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import AlreadyDecided, DecisionRefused, RequestCancelled, RequestExpired

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from .models import ApprovalRequest

__all__ = [
    "AlreadyDecided",
    "DecisionRefused",
    "RequestCancelled",
    "RequestExpired",
    "decide",
    "request_approval",
]


def request_approval(
    step: Any,
    name: str,
    *,
    title: str,
    details: Any = None,
    approvers: list[str],
    timeout: Any = "24 hours",
) -> dict[str, Any]:
    """Ask people to approve or reject, inside a workflow; return their decision.

    Creates one request (memoised like any step), emails the approvers, then waits for
    the decision holding no worker. `approvers` lists "user:NAME" and "group:NAME";
    superusers may decide too. Returns {"approved", "by", "comment", "decided_at"}.
    Raises workflows.WaitTimeout in the workflow when nobody decides within `timeout`
    (the request is then marked expired), and ValueError for bad arguments.
    """
    from .services import request_approval as _request_approval

    return _request_approval(step, name, title=title, details=details, approvers=approvers, timeout=timeout)


def decide(
    request_id: int, *, approved: bool, user: AbstractBaseUser | str, comment: str = ""
) -> ApprovalRequest:
    """Approve or reject a request from code, as `user` (a User or a username).

    Raises PermissionDenied (django.core.exceptions) for a user who may not decide it,
    AlreadyDecided / RequestExpired / RequestCancelled when it can no longer be decided,
    and ValueError for an unknown request id or bad input.
    """
    from .services import decide as _decide

    return _decide(request_id=request_id, approved=approved, user=user, comment=comment)
