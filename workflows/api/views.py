"""The HTTP API's views: parse the request, call the services (writes) and selectors (reads)
that the console, the command line and the Python API call, answer JSON.

Every view is wrapped by `endpoint`, which authenticates the bearer token, checks the
method and the role, and turns every refusal into the one JSON error shape (errors.py).
The views never read the session, so they are exempt from CSRF: a cookie grants nothing
here.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from datetime import UTC
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from .. import selectors, services
from ..models import Action, Instance, Status
from ..names import MAX_WORKFLOW_NAME, checked_name, shown
from ..roles import OPERATE_PERMISSION, VIEW_PERMISSION
from .auth import authenticate, authorize
from .bodies import json_object
from .errors import HANDLED_ERRORS, InvalidRequest, MethodNotAllowed, NotFound, error_response, response_for
from .openapi import openapi_document

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500

View = Callable[..., HttpResponse]


def endpoint(**permission_by_method: str) -> Callable[[View], View]:
    """The view answers the given methods, each to users with the given permission:
    `@endpoint(GET=VIEW_PERMISSION)`."""

    def decorate(view: View) -> View:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            try:
                user = authenticate(request)
                permission = permission_by_method.get(request.method or "")
                if permission is None:
                    allowed = ", ".join(permission_by_method)
                    raise MethodNotAllowed(
                        f"{request.method} is not allowed here: use {allowed}", headers={"Allow": allowed}
                    )
                authorize(user, permission)
                return view(request, **kwargs)
            except HANDLED_ERRORS as exc:
                return response_for(exc)
            except Exception:
                # A bug, not bad input: logged with its traceback, answered in the API's shape.
                logger.exception("the API failed on %s %s", request.method, request.path)
                return error_response(500, "InternalError", "the server failed; the error was logged")

        wrapper.api_methods = tuple(permission_by_method)  # read by the OpenAPI test
        return wrapper

    return decorate


# --- workflows --------------------------------------------------------------------------


@endpoint(GET=VIEW_PERMISSION)
def workflow_list(request: HttpRequest) -> HttpResponse:
    stats = selectors.workflow_stats()
    return JsonResponse({"workflows": [{"name": row.name, "counts": row.counts} for row in stats]})


@endpoint(POST=OPERATE_PERMISSION)
def instance_create(request: HttpRequest, name: str) -> HttpResponse:
    body = json_object(request, fields={"params", "id", "instances"})
    if "instances" not in body:
        instance = services.create_instance(
            workflow=name, params=body.get("params"), instance_id=body.get("id")
        )
        return JsonResponse(_summary(instance, "id", "workflow", "status"), status=201)
    if set(body) != {"instances"}:
        raise InvalidRequest('send either "instances" (a batch) or "params" and "id" (one), not both')
    items = body["instances"]
    if not isinstance(items, list) or not items:
        raise InvalidRequest('"instances" must be a non-empty array of {"params": ..., "id": ...} objects')
    instances = services.create_instances(workflow=name, items=items)
    return JsonResponse({"ids": [instance.id for instance in instances]}, status=201)


# --- instances --------------------------------------------------------------------------


@endpoint(GET=VIEW_PERMISSION)
def instance_list(request: HttpRequest) -> HttpResponse:
    query = request.GET
    unknown = sorted(set(query) - {"workflow", "status", "limit", "cursor"})
    if unknown:
        raise InvalidRequest(
            f"unknown query parameter(s) {', '.join(map(shown, unknown))} "
            "(allowed: workflow, status, limit, cursor)"
        )
    workflow = query.get("workflow") or ""
    if workflow:
        checked_name(workflow, what="workflow", max_length=MAX_WORKFLOW_NAME)
    status = query.get("status") or ""
    if status and status not in Status.values:
        raise InvalidRequest(f"status {shown(status)} is not a status: use {', '.join(Status.values)}")
    page = selectors.instance_page(
        filters=selectors.InstanceFilters(workflow=workflow, status=status),
        after=_decode_cursor(query["cursor"]) if query.get("cursor") else None,
        size=_page_size(query.get("limit")),
    )
    return JsonResponse(
        {
            "instances": [
                _summary(row, "id", "workflow", "status", "created_at", "updated_at") for row in page.rows
            ],
            "next": _encode_cursor(page.next_cursor) if page.next_cursor else None,
        }
    )


def _page_size(text: str | None) -> int:
    try:
        return selectors.parse_page_size(text, maximum=MAX_PAGE_SIZE) if text else DEFAULT_PAGE_SIZE
    except ValueError as exc:
        raise InvalidRequest(f"limit {exc}") from None


# The console's keyset cursor ("created_at|id"), wrapped so that clients treat it as opaque.
def _encode_cursor(cursor: str) -> str:
    return base64.urlsafe_b64encode(cursor.encode()).decode().rstrip("=")


def _decode_cursor(opaque: str) -> str:
    try:
        cursor = base64.urlsafe_b64decode(opaque + "=" * (-len(opaque) % 4)).decode()
        created, _ = selectors.decode_cursor(cursor)
        created.astimezone(UTC)  # a moment the database can hold
    except (ValueError, OverflowError):  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise InvalidRequest(
            f'invalid cursor {shown(opaque)}: pass back the "next" of a previous page'
        ) from None
    return cursor


@endpoint(GET=VIEW_PERMISSION)
def instance_detail(request: HttpRequest, instance_id: str) -> HttpResponse:
    return JsonResponse(selectors.instance_report(instance_id=instance_id))


@endpoint(POST=OPERATE_PERMISSION)
def instance_events(request: HttpRequest, instance_id: str) -> HttpResponse:
    body = json_object(request, fields={"type", "payload"})
    if "type" not in body:
        raise InvalidRequest('the field "type" (the event type, a string) is required')
    event = services.send_event(instance_id=instance_id, event_type=body["type"], payload=body.get("payload"))
    return JsonResponse({"id": event.id}, status=202)


# The option each action takes in its body.
_ACTION_FIELDS = {Action.TERMINATE: {"rollback"}, Action.RESTART: {"from_step"}}


@endpoint(POST=OPERATE_PERMISSION)
def instance_action(request: HttpRequest, instance_id: str, action: str) -> HttpResponse:
    if action not in Action.values:
        raise NotFound(f"no action {shown(action)}: use events, {', '.join(Action.values)}")
    body = json_object(request, fields=_ACTION_FIELDS.get(Action(action), set()))
    if action == Action.TERMINATE:
        rollback = body.get("rollback", False)
        if not isinstance(rollback, bool):
            raise InvalidRequest(f'"rollback" must be true or false, got {shown(rollback)}')
        instance = services.terminate_instance(instance_id=instance_id, rollback=rollback)
    elif action == Action.RESTART:
        instance = services.restart_instance(instance_id=instance_id, from_step=body.get("from_step"))
    else:
        instance = services.apply_lifecycle_action(instance_id=instance_id, action=action)
    return JsonResponse(_summary(instance, "id", "status"))


def _summary(instance: Instance, *fields: str) -> dict[str, Any]:
    values = {field: getattr(instance, field) for field in fields}
    return {field: value.isoformat() if field.endswith("_at") else value for field, value in values.items()}


# --- the API's description and its unknown routes ------------------------------------------


@csrf_exempt
def openapi(request: HttpRequest) -> HttpResponse:
    """The OpenAPI 3 document: public, like any API reference (it names no data)."""
    if request.method != "GET":
        return response_for(
            MethodNotAllowed(f"{request.method} is not allowed here: use GET", headers={"Allow": "GET"})
        )
    return JsonResponse(openapi_document(base_path=request.path.removesuffix("/openapi.json")))


@csrf_exempt
def not_found(request: HttpRequest, path: str) -> HttpResponse:
    return response_for(
        NotFound(f"no route {shown(request.path)} in this API (see {reverse('workflows_api:openapi')})")
    )
