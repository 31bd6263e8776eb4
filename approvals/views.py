"""The approvals inbox: thin views over approvals.services and approvals.selectors.

A request the user may not decide is a 404, exactly as one that does not exist, so that
trying ids tells nobody which requests there are.

A refused decision (already decided, expired, bad input) made with htmx comes back as
the request's card with the message and status 422: workflows/base.html's htmx-config swaps only
2xx and 422 responses, so 403/409 would not be shown inline. Without JavaScript the form
posts normally and redirects with a message.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from django_htmx.middleware import HtmxDetails

import workflows

from . import services
from .errors import DecisionRefused
from .models import ApprovalRequest
from .selectors import (
    INBOX_LIMIT,
    history_for_user,
    may_decide,
    may_use_inbox,
    pending_for_user,
    request_for_user,
)

CARD_TEMPLATE = "approvals/_request_card.html"


def _approvers_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """403 for anyone who is not an approver (see selectors.may_use_inbox)."""

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not may_use_inbox(user=request.user):
            raise PermissionDenied("Only approvers may use the approvals inbox.")
        return view(request, *args, **kwargs)

    return guarded


@login_required
@require_GET
@_approvers_only
def inbox(request: HttpRequest) -> HttpResponse:
    tab = "history" if request.GET.get("tab") == "history" else "pending"
    context: dict = {"nav": "approvals", "tab": tab}
    if tab == "history":
        context["history"] = history_for_user(user=request.user)
    else:
        context["pending"] = pending_for_user(user=request.user)
        context["more_pending"] = len(context["pending"]) == INBOX_LIMIT
    return render(request, "approvals/inbox.html", context)


@login_required
@require_GET
@_approvers_only
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    approval = _request_or_404(request, pk)
    return render(
        request,
        "approvals/detail.html",
        {"nav": "approvals", "approval": approval, "can_decide": _open(approval)},
    )


@login_required
@require_POST
@_approvers_only
def decide(request: HttpRequest, pk: int) -> HttpResponse:
    approval = _request_or_404(request, pk)
    choice = request.POST.get("approved")
    error = ""
    if choice not in ("yes", "no"):
        error = 'Choose "Approve" or "Reject".'
    else:
        try:
            approval = services.decide(
                request_id=approval.pk,
                approved=choice == "yes",
                user=request.user,
                comment=request.POST.get("comment", "").strip(),
            )
        except (PermissionDenied, DecisionRefused, ValueError) as exc:
            error = str(exc)
            approval.refresh_from_db()
    if HtmxDetails(request):  # read here: a project needs no htmx middleware
        visible = may_decide(user=request.user, request=approval)
        context = {
            "approval": approval,
            "visible": visible,
            "can_decide": visible and _open(approval),
            "error": error,
            "next": request.POST.get("next", ""),
            # The card replaces the one decided in: the keyboard focus moves to its outcome.
            "decided_now": not error,
        }
        return render(request, CARD_TEMPLATE, context, status=422 if error else 200)
    if error:
        messages.error(request, error)
    else:
        messages.success(request, f"{approval.get_status_display()}: {approval.title}")
    return HttpResponseRedirect(_next_url(request))


def _request_or_404(request: HttpRequest, pk: int) -> ApprovalRequest:
    approval = request_for_user(user=request.user, request_id=pk)
    if approval is None:
        raise Http404(f"No approval request #{pk} for you to decide.")
    return approval


def _open(approval: ApprovalRequest) -> bool:
    return approval.status == ApprovalRequest.Status.PENDING and approval.deadline > workflows.now()


def _next_url(request: HttpRequest) -> str:
    """Where the form came from, if that is a page of this site; else the inbox.

    Given to HttpResponseRedirect, not redirect(): redirect() takes a word like "inbox"
    for the name of a view, and fails when no view has it.
    """
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("approvals:inbox")
