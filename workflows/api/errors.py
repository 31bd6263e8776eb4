"""The HTTP API's errors: one JSON shape, `{"error": {"type": ..., "message": ...}}`, for
every refusal of the API (and of the webhooks, which import `error_response` and
`response_for`).

`type` is the name of an exception class: the engine's own (`InstanceNotFound`,
`InvalidState`, `PayloadError`...) or one of the request errors below.
"""

from __future__ import annotations

from django.http import JsonResponse

from ..errors import (
    InstanceExists,
    InstanceNotFound,
    InvalidState,
    MalformedJSON,
    PayloadTooLarge,
    WorkflowNotFound,
)


class ApiError(Exception):
    """A request the API refuses before (or instead of) calling a service."""

    status = 400

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers or {}


class BadRequest(ApiError):
    """The request itself is malformed (a header that cannot be read)."""

    status = 400


class NotAuthenticated(ApiError):
    """No token, or a token that is not (or no longer) valid."""

    status = 401


class PermissionDenied(ApiError):
    """The token's user lacks the role the call needs."""

    status = 403


class NotFound(ApiError):
    """No such route (or action) under the API."""

    status = 404


class MethodNotAllowed(ApiError):
    """The route exists, but not for this HTTP method."""

    status = 405


class LengthRequired(ApiError):
    """A body sent in chunks, without Content-Length: a WSGI server hands Django none of it."""

    status = 411


class InvalidRequest(ApiError):
    """The body or query is JSON but not what the route takes (a missing or unknown field,
    a value of the wrong type, a bad filter or cursor)."""

    status = 422


# The engine's exceptions, by the status they answer. Order matters: InstanceExists,
# MalformedJSON and PayloadTooLarge are ValueErrors, which are otherwise 422 (bad params,
# id, type, duration).
_STATUS_OF: tuple[tuple[type[Exception], int], ...] = (
    (MalformedJSON, 400),
    (WorkflowNotFound, 404),
    (InstanceNotFound, 404),
    (InstanceExists, 409),
    (InvalidState, 409),
    (PayloadTooLarge, 413),
    (ValueError, 422),
)

HANDLED_ERRORS: tuple[type[Exception], ...] = (ApiError, *(cls for cls, _ in _STATUS_OF))


def error_response(
    status: int, error_type: str, message: str, *, headers: dict[str, str] | None = None
) -> JsonResponse:
    """The one shape of every error the API and the webhooks answer."""
    return JsonResponse({"error": {"type": error_type, "message": message}}, status=status, headers=headers)


def response_for(exc: Exception) -> JsonResponse:
    """The error response for an ApiError or an engine exception in HANDLED_ERRORS."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, type(exc).__name__, str(exc), headers=exc.headers)
    status = next(status for cls, status in _STATUS_OF if isinstance(exc, cls))
    return error_response(status, type(exc).__name__, str(exc))
