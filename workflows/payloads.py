"""Checking that values stored by the engine are JSON and within the size limit."""

import json
from typing import Any

from django.conf import settings

from .errors import PayloadError

_TYPE_NAMES = "None, bool, int, float, str, list or dict"


def max_payload_bytes() -> int:
    return settings.DURABLE_MAX_PAYLOAD_BYTES


def to_json_value(value: Any, *, what: str) -> Any:
    """Return `value` as it will come back from the database, or raise PayloadError.

    The round trip makes the first run see exactly what a replay will see (a tuple
    becomes a list, int dict keys become strings).
    """
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise PayloadError(
            f"{what} must be JSON ({_TYPE_NAMES}); got {type(value).__name__}: {exc}"
        ) from None
    size = len(text.encode())
    limit = max_payload_bytes()
    if size > limit:
        raise PayloadError(
            f"{what} is {size:,} bytes serialised, over the limit of {limit:,} bytes "
            f"(DURABLE_MAX_PAYLOAD_BYTES)"
        )
    if "\x00" in text:
        raise PayloadError(f"{what} contains a NUL character (\\u0000), which cannot be stored")
    return json.loads(text)


def parse_json_text(text: str, *, what: str) -> Any:
    """Parse JSON typed by a person (command line, web form) with a clear error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    return to_json_value(value, what=what)
