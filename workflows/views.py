"""The operator console: thin views over the selectors (reads) and services (writes).

Viewers may read every page; operators may also act. Every action calls the same
service function as the Python API and the command line. htmx's request headers are
read with django-htmx's HtmxDetails, so a project needs no htmx middleware for the console.
"""

from __future__ import annotations

import hashlib
import re

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

from . import bulk, charts, gantt, metrics, schedules, selectors, services
from .api import tokens
from .api.auth import authenticate, authorize
from .api.errors import ApiError, error_response, response_for
from .clock import now
from .errors import InstanceExists, InstanceNotFound, InvalidState, WorkflowNotFound
from .forms import (
    BULK_ACTIONS,
    BulkActionForm,
    BulkFilterForm,
    CreateInstanceForm,
    CreateTokenForm,
    InstanceFilterForm,
    SendEventForm,
)
from .ingress.selectors import consumer_rows
from .models import Action, Instance, Status
from .names import shown
from .roles import OPERATE_PERMISSION, VIEW_PERMISSION


def _viewer(view):
    return login_required(permission_required(VIEW_PERMISSION, raise_exception=True)(view))


def _operator(view):
    return login_required(permission_required(OPERATE_PERMISSION, raise_exception=True)(require_POST(view)))


def _redirect(request: HttpRequest, url: str) -> HttpResponse:
    """After an action: htmx navigates the whole page (so messages show), a form post redirects."""
    if HtmxDetails(request):
        return HttpResponseClientRedirect(url)
    return HttpResponseRedirect(url)


def _instance_url(instance_id: str) -> str:
    return reverse("workflows:instance_detail", args=[instance_id])


# --- instances list -------------------------------------------------------------------


@_viewer
@require_GET
def instance_list(request: HttpRequest) -> HttpResponse:
    form = InstanceFilterForm(request.GET)
    if form.is_valid():
        filters = form.filters()
        page = selectors.instance_page(filters=filters, after=form.cleaned_data["after"] or None)
        selectors.mark_queued_behind_limit(page.rows)
        counts = selectors.status_counts(filters=filters)
    else:
        page, counts = selectors.InstancePage(rows=[], next_cursor=None), {}
    context = {
        "nav": "instances",
        "form": form,
        "page": page,
        "counts": counts,
        "total": sum(counts.values()),
        "status_links": _status_links(request.GET, counts),
        "next_url": _with(request.GET, after=page.next_cursor) if page.next_cursor else None,
        "first_url": _with(request.GET, after=None) if request.GET.get("after") else None,
        "can_operate": request.user.has_perm(OPERATE_PERMISSION),
        "bulk_actions": BULK_ACTIONS,
        "filter_query": _with(request.GET, after=None)[1:],  # the filter, without the page
    }
    # The rows alone, and the counts beside them (swapped out of band).
    rows = _Polled(request, "workflows/_instance_rows.html", {**context, "partial": True})
    if HtmxDetails(request).target == "instance-rows":
        return rows.response()
    return render(request, "workflows/instance_list.html", {**context, "seen": rows.fingerprint})


class _Polled:
    """A partial the page polls (htmx). Unchanged since the page's copy (whose fingerprint
    the poll sends as X-Durable-Seen), it is answered 204, which htmx does not swap: a
    screen reader does not read an unchanged live region again, and the keyboard focus
    stays where it is. `volatile` values (an age ticking) are left out of the comparison."""

    def __init__(self, request: HttpRequest, template: str, context: dict, **volatile: object) -> None:
        self.request, self.template, self.context, self.volatile = request, template, context, volatile
        steady = render_to_string(template, {**context, **dict.fromkeys(volatile)}, request)
        # The CSRF token of each form is masked afresh on every render.
        steady = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", steady)
        self.fingerprint = hashlib.blake2s(steady.encode(), digest_size=12).hexdigest()

    def response(self) -> HttpResponse:
        if self.request.headers.get("X-Durable-Seen") == self.fingerprint:
            return HttpResponse(status=204)
        return render(
            self.request, self.template, {**self.context, **self.volatile, "seen": self.fingerprint}
        )


def _with(query: QueryDict, **changes: str | None) -> str:
    """The current query string with some parameters replaced (None removes one)."""
    updated = query.copy()
    for key, value in changes.items():
        updated.pop(key, None)
        if value:
            updated[key] = value
    return f"?{updated.urlencode()}"


def _status_links(query: QueryDict, counts: dict[str, int]) -> list[dict]:
    current = query.get("status", "")
    return [
        {
            "status": status,
            "count": count,
            "url": _with(query, status=status, after=None),
            "on": status == current,
        }
        for status, count in counts.items()
    ]


@_operator
def bulk_action(request: HttpRequest) -> HttpResponse:
    form = BulkActionForm(request.POST)
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        back = ""
    back = back or reverse("workflows:instance_list")
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, " ".join(errors))
        return _redirect(request, back)
    action, done, refused = form.cleaned_data["action"], [], []
    for instance_id in form.cleaned_data["ids"]:
        try:
            services.apply_lifecycle_action(instance_id=instance_id, action=action)
            done.append(instance_id)
        except (InvalidState, InstanceNotFound) as exc:
            refused.append(str(exc))
    if done:
        messages.success(request, f"{action}: {len(done)} instance(s) done.")
    for reason in refused:
        messages.error(request, reason)
    return _redirect(request, back)


@login_required
@permission_required(OPERATE_PERMISSION, raise_exception=True)
def bulk_all(request: HttpRequest) -> HttpResponse:
    """A bulk action on everything the list's filter matches. GET: how many it would
    change, and the confirmation. POST: the next batch, and the progress so far; under
    htmx the answer posts the next batch as soon as it is shown, until none is left."""
    form = BulkFilterForm(request.POST if request.method == "POST" else request.GET)
    context: dict = {"nav": "instances", "form": form, "batch_size": bulk.BATCH_SIZE}
    if not form.is_valid():
        context["problem"] = " ".join(" ".join(errors) for errors in form.errors.values())
    elif request.method != "POST":
        context["total"] = bulk.preview_count(filters=form.filters(), action=form.cleaned_data["action"])
    else:
        data = form.cleaned_data
        batch = bulk.run_batch(filters=form.filters(), action=data["action"], after=data["after"] or None)
        done, refused = (data["done"] or 0) + batch.done, (data["refused"] or 0) + len(batch.refused)
        context |= {
            "running": True,
            "batch": batch,
            "done": done,
            "refused": refused,
            # Instances that came to match after the preview are counted in, not above 100 %.
            "total": max(data["total"] or 0, done + refused),
        }
    template = "workflows/_bulk_all.html" if HtmxDetails(request) else "workflows/bulk_all.html"
    return render(request, template, context, status=422 if "problem" in context else 200)


# --- one instance ---------------------------------------------------------------------


def _instance_or_404(instance_id: str) -> Instance:
    try:
        return selectors.get_instance(instance_id=instance_id)
    except InstanceNotFound as exc:
        raise Http404(str(exc)) from None


def _detail_context(request: HttpRequest, instance: Instance, **extra: object) -> dict:
    timeline = selectors.instance_timeline(instance=instance)
    selectors.mark_queued_behind_limit([instance])
    can_operate = request.user.has_perm(OPERATE_PERMISSION)
    return {
        "nav": "instances",
        "instance": instance,
        "timeline": timeline,
        "gantt": gantt.build(instance=instance, steps=timeline.steps, now=now()),
        "age": (instance.finished_at or now()) - instance.created_at,
        "can_operate": can_operate,
        "actions": [action.value for action in Action if instance.allows(action)] if can_operate else [],
        "event_form": SendEventForm() if can_operate and instance.accepts_events else None,
        **extra,
    }


@_viewer
@require_GET
def instance_detail(request: HttpRequest, instance_id: str) -> HttpResponse:
    instance = _instance_or_404(instance_id)
    context = _detail_context(request, instance)
    # The age ticks and the chart's open bars grow with the clock: they alone do not make
    # a poll's answer new (the chart is redrawn whenever a step changes).
    volatile = {"age": context.pop("age"), "gantt": context.pop("gantt")}
    live = _Polled(request, "workflows/_instance_live.html", context, **volatile)
    if HtmxDetails(request).target == "instance-live":
        return live.response()
    return render(
        request, "workflows/instance_detail.html", {**context, **volatile, "seen": live.fingerprint}
    )


@_operator
def instance_action(request: HttpRequest, instance_id: str, action: str) -> HttpResponse:
    if action not in Action.values:
        raise Http404(f"no action {action!r}")
    try:
        # Two actions take an option: terminate with rollback, restart from a step.
        if action == Action.TERMINATE and request.POST.get("rollback") == "1":
            instance = services.terminate_instance(instance_id=instance_id, rollback=True)
        elif action == Action.RESTART and request.POST.get("from_step"):
            instance = services.restart_instance(instance_id=instance_id, from_step=request.POST["from_step"])
        else:
            instance = services.apply_lifecycle_action(instance_id=instance_id, action=action)
    except InstanceNotFound as exc:
        raise Http404(str(exc)) from None
    except (InvalidState, ValueError) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{action}: instance is now {instance.status}.")
    return _redirect(request, _instance_url(instance_id))


@_operator
def instance_delete(request: HttpRequest, instance_id: str) -> HttpResponse:
    try:
        services.delete_instance(instance_id=instance_id)
    except InstanceNotFound as exc:
        raise Http404(str(exc)) from None
    except InvalidState as exc:
        messages.error(request, str(exc))
        return _redirect(request, _instance_url(instance_id))
    messages.success(request, f"Deleted instance {instance_id}, with its steps and events.")
    return _redirect(request, reverse("workflows:instance_list"))


@_operator
def send_event(request: HttpRequest, instance_id: str) -> HttpResponse:
    instance = _instance_or_404(instance_id)
    form = SendEventForm(request.POST)
    if form.is_valid():
        try:
            services.send_event(
                instance_id=instance.id,
                event_type=form.cleaned_data["type"],
                payload=form.cleaned_data["payload"],
            )
        except (InvalidState, ValueError) as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f'Event "{form.cleaned_data["type"]}" sent.')
            return _redirect(request, _instance_url(instance.id))
    # 422: htmx swaps the form back in with its errors (see workflows/base.html's htmx-config).
    template = "workflows/_send_event_form.html" if HtmxDetails(request) else "workflows/instance_detail.html"
    return render(request, template, _detail_context(request, instance, event_form=form), status=422)


# --- starting instances and the workflows page ------------------------------------------


@login_required
@permission_required(OPERATE_PERMISSION, raise_exception=True)
def instance_create(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        form = CreateInstanceForm(initial={"workflow": request.GET.get("workflow")})
        return render(request, "workflows/instance_create.html", {"nav": "instances", "form": form})
    form = CreateInstanceForm(request.POST)
    if form.is_valid():
        try:
            instance = services.create_instance(
                workflow=form.cleaned_data["workflow"],
                params=form.cleaned_data["params"],
                instance_id=form.cleaned_data["instance_id"] or None,
            )
        except InstanceExists as exc:
            form.add_error("instance_id", str(exc))
        except (WorkflowNotFound, ValueError) as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Started {instance.workflow} instance {instance.id}.")
            return _redirect(request, _instance_url(instance.id))
    return render(request, "workflows/instance_create.html", {"nav": "instances", "form": form}, status=422)


@_viewer
@require_GET
def workflow_list(request: HttpRequest) -> HttpResponse:
    window = request.GET.get("window", "24h")
    if window not in charts.WINDOWS:
        messages.error(request, f"No window {shown(window)}: showing the last 24 hours (or choose 7d).")
        window = "24h"
    return render(
        request,
        "workflows/workflow_list.html",
        {
            "nav": "workflows",
            "window": window,
            "health": charts.health(window=window, now=now()),
            "workflows": selectors.workflow_stats(),
            "consumers": consumer_rows(),
            "schedules": selectors.schedules(),
            "statuses": Status.values,
            "can_operate": request.user.has_perm(OPERATE_PERMISSION),
        },
    )


@_operator
def schedule_action(request: HttpRequest) -> HttpResponse:
    """Pause or resume a scheduled workflow (POST workflow=name, action=pause|resume)."""
    change = {"pause": schedules.pause_schedule, "resume": schedules.resume_schedule}.get(
        request.POST.get("action", "")
    )
    name = request.POST.get("workflow", "")
    if change is None:
        messages.error(request, "Choose pause or resume.")
    else:
        try:
            row = change(workflow=name)
        except ValueError as exc:
            messages.error(request, str(exc))
        else:
            state = "paused: its due times pass without starting" if row.paused else "resumed"
            messages.success(request, f"Schedule of {name} {state}.")
    return _redirect(request, reverse("workflows:workflow_list") + "#schedules")


# --- API tokens ---------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def token_list(request: HttpRequest) -> HttpResponse:
    """A signed-in user's own API tokens; a POST creates one, shown on this answer only."""
    form, created, status = CreateTokenForm(), None, 200
    if request.method == "POST":
        form = CreateTokenForm(request.POST)
        if form.is_valid():
            try:
                row, secret = tokens.create_token(
                    username=request.user.get_username(), name=form.cleaned_data["name"] or None
                )
            except ValueError as exc:
                form.add_error("name", str(exc))
            else:
                created, form = {"name": row.name, "secret": secret}, CreateTokenForm()
        status = 200 if created else 422
    response = render(
        request,
        "workflows/token_list.html",
        {
            "nav": "tokens",
            "form": form,
            "created": created,
            "tokens": selectors.api_tokens_of(user=request.user),
        },
        status=status,
    )
    response["Cache-Control"] = "no-store"  # the new token is on this page: keep it out of caches
    return response


@login_required
@require_POST
def token_revoke(request: HttpRequest) -> HttpResponse:
    name = request.POST.get("name", "")
    # Only one's own: another user's token is answered as if it did not exist.
    if name in {token.name for token in selectors.api_tokens_of(user=request.user)}:
        tokens.revoke_token(name=name, username=request.user.get_username())
        messages.success(request, f'Token "{name}" revoked: requests presenting it are refused from now on.')
    else:
        messages.error(request, f"You have no token named {shown(name)}.")
    return _redirect(request, reverse("workflows:token_list"))


# --- metrics (Prometheus) ----------------------------------------------------------------


@csrf_exempt
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus' text format, for a bearer token: DURABLE_METRICS_TOKEN, or an API token
    whose user may view the console (Viewers, Operators)."""
    if request.method not in ("GET", "HEAD"):
        return error_response(405, "MethodNotAllowed", "GET /metrics only", headers={"Allow": "GET, HEAD"})
    scheme, _, presented = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if not (scheme.lower() == "bearer" and metrics.is_metrics_token(presented.strip())):
        try:
            authorize(authenticate(request), VIEW_PERMISSION)
        except ApiError as exc:
            return response_for(exc)
    return HttpResponse(metrics.exposition(), content_type=metrics.CONTENT_TYPE)
