"""The API's request bodies: their size checked before they are read, then parsed as JSON
objects with the fields a route takes."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

from ..errors import MalformedJSON, PayloadTooLarge
from ..names import shown
from ..payloads import load_json_text, max_payload_bytes
from .errors import BadRequest, InvalidRequest, LengthRequired


def raw_body(request: HttpRequest) -> bytes:
    """The body's bytes; PayloadTooLarge (413) when it is over the payload limit, checked
    from Content-Length before anything is read."""
    if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        # Django reads Content-Length bytes of a body, so a chunked one would arrive empty.
        raise LengthRequired("send the body with a Content-Length header, not in chunks")
    limit = max_payload_bytes()
    announced = request.META.get("CONTENT_LENGTH") or "0"
    if not (announced.isascii() and announced.isdigit()):  # Django could not read the body
        raise BadRequest(f"the Content-Length header is not a number: {shown(announced)}")
    declared = int(announced)
    if declared > limit:
        raise PayloadTooLarge(_too_large(declared, limit))
    try:
        body = request.body
    except RequestDataTooBig:  # over Django's DATA_UPLOAD_MAX_MEMORY_SIZE
        raise PayloadTooLarge(_too_large(declared, limit)) from None
    if len(body) > limit:
        raise PayloadTooLarge(_too_large(len(body), limit))
    return body


def _too_large(size: int, limit: int) -> str:
    return (
        f"the request body is {size:,} bytes, over the limit of {limit:,} bytes (DURABLE_MAX_PAYLOAD_BYTES)"
    )


def parse_json(body: bytes) -> Any:
    """The JSON value of `body` (UTF-8); MalformedJSON (400) for what is not JSON, and
    PayloadError (422) for JSON that Python cannot hold (nested past its recursion limit,
    an integer of thousands of digits)."""
    if not body.strip():
        raise MalformedJSON("the request body is empty: send a JSON value")
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise MalformedJSON(f"the request body is not UTF-8: byte {exc.start} is invalid") from None
    return load_json_text(text, what="the request body")


def json_object(request: HttpRequest, *, fields: set[str]) -> dict[str, Any]:
    """The body as a JSON object with no keys but `fields` (an empty body is {})."""
    body = raw_body(request)
    if not body.strip():
        return {}
    value = parse_json(body)
    if not isinstance(value, dict):
        raise InvalidRequest(f"the request body must be a JSON object, got {_json_type(value)}")
    unknown = sorted(set(value) - fields)
    if unknown:
        allowed = ", ".join(f'"{name}"' for name in sorted(fields)) or "none"
        raise InvalidRequest(f"unknown field(s) {', '.join(map(shown, unknown))} (allowed: {allowed})")
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    return {list: "an array", str: "a string", int: "a number", float: "a number"}.get(type(value), "null")
