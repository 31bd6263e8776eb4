"""Asking for and recording decisions. Transactions live here.

Uses the workflows app through its public API only (`import workflows`).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.core.exceptions import PermissionDenied
from django.core.mail import send_mass_mail
from django.db import transaction

import workflows

from .errors import AlreadyDecided, RequestCancelled, RequestExpired
from .models import ApprovalRequest, Approver
from .selectors import may_decide

logger = logging.getLogger(__name__)

MAX_NAME = 200
MAX_TITLE = 300
MAX_COMMENT = 5000
MAX_APPROVER = 200  # Approver.principal's length
MAX_DETAILS_DEPTH = 100
DEFAULT_TIMEOUT = "24 hours"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
_APPROVER = re.compile(r"^(user|group):\S.*$")


def request_approval(
    step: Any,
    name: str,
    *,
    title: str,
    details: Any = None,
    approvers: list[str],
    timeout: Any = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """Ask the approvers, wait for the decision and return it (see approvals.request_approval)."""
    details = {} if details is None else details
    length = _checked_request(name=name, title=title, details=details, approvers=approvers, timeout=timeout)
    request_id = step.do(
        name,
        create_request,
        instance_id=step.instance_id,
        request_name=name,
        title=title.strip(),
        details=details,
        approvers=list(approvers),
        timeout_seconds=length.total_seconds(),
    )
    try:
        step.do(f"{name} (notify)", notify_approvers, request_id=request_id)
    except workflows.StepFailed as exc:
        # The request is in the inbox whether or not the email went out.
        logger.warning("approval request %s: emailing the approvers failed: %s", request_id, exc)
    try:
        return step.wait_for_event(f"{name} (decision)", type=f"approval:{request_id}", timeout=length)
    except workflows.WaitTimeout as exc:
        step.do(f"{name} (expired)", mark_expired, request_id=request_id)
        raise workflows.WaitTimeout(
            f'approval "{name}" (request {request_id}) was not decided in time: {exc}'
        ) from exc


def _checked_request(*, name: Any, title: Any, details: Any, approvers: Any, timeout: Any) -> timedelta:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME:
        raise ValueError(
            f"request_approval: name must be a string of 1-{MAX_NAME} characters, got {_shown(name)}"
        )
    if problem := _text_problem(name):
        raise ValueError(f"request_approval: name {_shown(name)} {problem}")
    if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE:
        raise ValueError(
            f'request_approval "{name}": title must be a non-empty string of at most {MAX_TITLE} '
            f"characters, got {_shown(title)}"
        )
    if problem := _text_problem(title):
        raise ValueError(f'request_approval "{name}": title {_shown(title)} {problem}')
    if problem := _details_problem(details):
        raise ValueError(f'request_approval "{name}": details {problem}')
    try:
        json.dumps(details, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f'request_approval "{name}": details must be JSON ({exc}), got {_shown(details)}'
        ) from None
    if (
        not isinstance(approvers, list | tuple)
        or not approvers
        or not all(
            isinstance(entry, str) and len(entry) <= MAX_APPROVER and _APPROVER.match(entry)
            for entry in approvers
        )
    ):
        raise ValueError(
            f'request_approval "{name}": approvers must be a non-empty list of "user:NAME" or '
            f'"group:NAME" strings of at most {MAX_APPROVER} characters, got {_shown(approvers)}'
        )
    for entry in approvers:
        if problem := _text_problem(entry):
            raise ValueError(f'request_approval "{name}": approver {_shown(entry)} {problem}')
    try:
        length = workflows.parse_duration(timeout)
    except ValueError as exc:
        raise ValueError(f'request_approval "{name}": timeout: {exc}') from None
    if length <= timedelta(0):
        raise ValueError(f'request_approval "{name}": timeout must be longer than zero, got {timeout!r}')
    return length


def create_request(
    *,
    instance_id: str,
    request_name: str,
    title: str,
    details: Any,
    approvers: list[str],
    timeout_seconds: float,
) -> int:
    """Record a pending request and return its id (`request_name`: the name in the workflow).

    Idempotent: run again for the same instance and name (a worker killed after the
    insert but before the engine recorded the step), it returns the still-pending request.
    """
    with transaction.atomic():
        existing = (
            ApprovalRequest.objects.select_for_update()
            .filter(instance_id=instance_id, name=request_name, status=ApprovalRequest.Status.PENDING)
            .first()
        )
        if existing is not None:
            return existing.pk
        now = workflows.now()
        request = ApprovalRequest.objects.create(
            instance_id=instance_id,
            name=request_name,
            title=title,
            details=details,
            approvers=approvers,
            created_at=now,
            deadline=now + timedelta(seconds=timeout_seconds),
        )
        Approver.objects.bulk_create(
            [Approver(request=request, principal=principal) for principal in dict.fromkeys(approvers)]
        )
    _warn_about_unknown_approvers(request)
    return request.pk


def notify_approvers(*, request_id: int) -> int:
    """Email the named users and the members of the named groups; return how many emails."""
    request = ApprovalRequest.objects.get(pk=request_id)
    link = base_url().rstrip("/") + request.get_absolute_url()
    subject = "Approval needed: " + " ".join(request.title.split())
    lines = [f"  {key}: {value}" if key else f"  {value}" for key, value in request.detail_pairs()]
    details = "".join(line + "\n" for line in lines)
    body = (
        f"{request.title}\n\n{details}\n"
        f"Approve or reject it here (before {request.deadline:%Y-%m-%d %H:%M %Z}):\n{link}\n"
    )
    messages = [(subject, body, None, [address]) for address in _approver_emails(request)]
    return send_mass_mail(messages) if messages else 0


def base_url() -> str:
    """The site's address for links in emails: DURABLE_BASE_URL, else the development one."""
    return getattr(settings, "DURABLE_BASE_URL", DEFAULT_BASE_URL)


def cancel_pending_requests(*, instance_id: str, **signal_kwargs: Any) -> int:
    """The instance finished (workflows.signals.instance_finished): nobody waits for its
    pending requests any more, so they leave the inbox as cancelled."""
    return ApprovalRequest.objects.filter(
        instance_id=instance_id, status=ApprovalRequest.Status.PENDING
    ).update(status=ApprovalRequest.Status.CANCELLED)


def delete_requests_of(*, instance_ids: list[str], **signal_kwargs: Any) -> int:
    """The instances were deleted (workflows.signals.instances_deleted): so are their requests."""
    deleted, _ = ApprovalRequest.objects.filter(instance_id__in=instance_ids).delete()
    return deleted


def mark_expired(*, request_id: int) -> None:
    """The workflow stopped waiting: a still-pending request is expired."""
    ApprovalRequest.objects.filter(pk=request_id, status=ApprovalRequest.Status.PENDING).update(
        status=ApprovalRequest.Status.EXPIRED
    )


def decide(
    *, request_id: int, approved: bool, user: AbstractBaseUser | str, comment: str = ""
) -> ApprovalRequest:
    """Approve or reject a pending request and resume its workflow instance, all or nothing.

    Raises PermissionDenied when `user` is not an approver of the request, AlreadyDecided,
    RequestExpired or RequestCancelled (after recording the cancellation) when it can no
    longer be decided, and ValueError for bad input.
    """
    if not isinstance(approved, bool):
        raise ValueError(f"approved must be True or False, got {approved!r}")
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise ValueError(f"comment must be a string of at most {MAX_COMMENT} characters")
    if problem := _text_problem(comment):
        raise ValueError(f"the comment {problem}: remove it and decide again")
    decider = _as_user(user)
    with transaction.atomic():
        request = ApprovalRequest.objects.select_for_update().filter(pk=_as_request_id(request_id)).first()
        if request is None:
            raise ValueError(f"no approval request with id {request_id!r}")
        _refuse_unless_decidable(request, decider)
        decided_at = workflows.now()
        decision = {
            "approved": approved,
            "by": decider.get_username(),
            "comment": comment,
            "decided_at": decided_at.isoformat(),
        }
        try:
            workflows.get(request.instance_id).send_event(request.event_type, decision)
        except (workflows.InvalidState, workflows.InstanceNotFound) as exc:
            request.status = ApprovalRequest.Status.CANCELLED
            request.save(update_fields=["status"])
            reason = str(exc)
        else:
            request.status = ApprovalRequest.Status.APPROVED if approved else ApprovalRequest.Status.REJECTED
            request.decided_by = decider
            request.decided_by_username = decider.get_username()
            request.decided_at = decided_at
            request.comment = comment
            request.save(
                update_fields=["status", "decided_by", "decided_by_username", "decided_at", "comment"]
            )
            return request
    raise RequestCancelled(
        f'approval request {request.pk} "{request.title}" was cancelled: workflow instance '
        f'"{request.instance_id}" is no longer waiting for a decision ({reason})'
    )


def _refuse_unless_decidable(request: ApprovalRequest, user: AbstractBaseUser) -> None:
    if not may_decide(user=user, request=request):
        # Who the approvers are is for them to know, not for whoever asks.
        raise PermissionDenied(
            f"{user.get_username()} may not decide approval request {request.pk}: "
            "they are not one of its approvers"
        )
    if request.status in (ApprovalRequest.Status.APPROVED, ApprovalRequest.Status.REJECTED):
        raise AlreadyDecided(
            f"approval request {request.pk} was already {request.status} by "
            f"{request.decided_by_username} at {request.decided_at.isoformat(timespec='seconds')}"
        )
    if request.status == ApprovalRequest.Status.CANCELLED:
        raise RequestCancelled(
            f"approval request {request.pk} was cancelled: its workflow instance no longer waits for it"
        )
    if request.status == ApprovalRequest.Status.EXPIRED or request.deadline <= workflows.now():
        raise RequestExpired(
            f"approval request {request.pk} expired at {request.deadline.isoformat(timespec='seconds')} "
            "without a decision"
        )


def _as_user(user: AbstractBaseUser | str) -> AbstractBaseUser:
    if isinstance(user, str):
        if problem := _text_problem(user):
            raise ValueError(f"no user named {_shown(user)}: the name {problem}")
        found = get_user_model()._default_manager.filter(**{get_user_model().USERNAME_FIELD: user}).first()
        if found is None:
            raise ValueError(f"no user named {user!r}")
        return found
    if isinstance(user, AbstractBaseUser):
        return user
    raise ValueError(f"user must be a User or a username, got {user!r}")


def _as_request_id(request_id: Any) -> int:
    try:
        return int(request_id)
    except (TypeError, ValueError):
        raise ValueError(f"no approval request with id {request_id!r}") from None


def _text_problem(text: str) -> str | None:
    """Why no database can store `text` as it is, or None."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which cannot be stored"
    try:
        text.encode()
    except UnicodeEncodeError:
        return "contains a lone surrogate (invalid Unicode), which cannot be stored"
    return None


def _details_problem(details: Any) -> str | None:
    """Why the details cannot be stored (a NUL, a lone surrogate, nesting too deep), or None.

    Walked without recursion: json.dumps would overflow the stack on deep nesting.
    """
    pending = [(details, 0)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            if problem := _text_problem(value):
                return f"hold the text {_shown(value)}, which {problem}"
        elif isinstance(value, dict | list | tuple):
            if depth >= MAX_DETAILS_DEPTH:
                return f"are nested more than {MAX_DETAILS_DEPTH} levels deep"
            children = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            pending.extend((child, depth + 1) for child in children)
    return None


def _shown(value: Any) -> str:
    """A bad value in an error message: printable, and short."""
    text = ascii(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _approver_emails(request: ApprovalRequest) -> list[str]:
    usernames = [entry.removeprefix("user:") for entry in request.approvers if entry.startswith("user:")]
    groups = [entry.removeprefix("group:") for entry in request.approvers if entry.startswith("group:")]
    User = get_user_model()
    users = User._default_manager.filter(is_active=True).exclude(email="")
    named = users.filter(**{f"{User.USERNAME_FIELD}__in": usernames})
    members = users.filter(groups__name__in=groups)
    return sorted(set(named.values_list("email", flat=True)) | set(members.values_list("email", flat=True)))


def _warn_about_unknown_approvers(request: ApprovalRequest) -> None:
    User = get_user_model()
    for entry in request.approvers:
        kind, _, name = entry.partition(":")
        if kind == "user":
            known = User._default_manager.filter(**{User.USERNAME_FIELD: name}).exists()
        else:
            known = Group.objects.filter(name=name).exists()
        if not known:
            logger.warning("approval request %s names an unknown approver %r", request.pk, entry)
