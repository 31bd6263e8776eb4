"""What the engine may store: JSON values within the size limit that every database keeps
exactly as given (api.md section 7).

PostgreSQL's jsonb cannot hold a NUL character, no database keeps a lone surrogate, and
values nested without end or integers of any size are ways to exhaust a worker. So every
value is walked once before it is stored, and the first problem is reported with its place.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .conf import setting
from .errors import MalformedJSON, PayloadError, PayloadTooLarge
from .names import text_problem

MAX_DEPTH = 100
MIN_INT = -(2**63)
MAX_INT = 2**63 - 1
_TYPE_NAMES = "None, bool, int, float, str, list or dict"


def max_payload_bytes() -> int:
    return setting("MAX_PAYLOAD_BYTES")


def to_json_value(value: Any, *, what: str) -> Any:
    """Return `value` as it will come back from the database, or raise PayloadError.

    The round trip makes the first run see exactly what a replay will see (a tuple
    becomes a list, int dict keys become strings).
    """
    problem = _first_problem(value)
    if problem is not None:
        place, message = problem
        raise PayloadError(f"{what}{' at ' + place if place else ''} {message}")
    text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    size = len(text.encode())
    limit = max_payload_bytes()
    if size > limit:
        raise PayloadTooLarge(
            f"{what} is {size:,} bytes serialised, over the limit of {limit:,} bytes "
            f"(DURABLE_MAX_PAYLOAD_BYTES)"
        )
    return json.loads(text)


def parse_json_text(text: str, *, what: str) -> Any:
    """Parse JSON typed by a person or sent by a program, with a clear error."""
    return to_json_value(load_json_text(text, what=what), what=what)


def load_json_text(text: str, *, what: str) -> Any:
    """The JSON value of `text`, not yet checked: MalformedJSON for text that is not JSON,
    PayloadError for JSON that Python cannot even hold."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedJSON(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise PayloadError(f"{what} is nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:  # an integer of more digits than Python will convert
        raise PayloadError(f"{what} is not valid JSON: {exc}") from None


def _first_problem(value: Any) -> tuple[str, str] | None:
    """(place, what is wrong) for the first value that cannot be stored, else None.

    Iterative, so that a deeply nested value cannot exhaust the stack.
    """
    stack: list[tuple[Any, tuple | None, int]] = [(value, None, 0)]
    while stack:
        item, path, depth = stack.pop()
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, str):
            message = text_problem(item)
        elif isinstance(item, int):
            message = None if MIN_INT <= item <= MAX_INT else "is an integer outside the 64-bit range"
        elif isinstance(item, float):
            message = None if math.isfinite(item) else f"must be JSON: {item!r} is not a JSON number"
        elif isinstance(item, list | tuple | dict):
            if depth >= MAX_DEPTH:
                return _place(path), f"is nested more than {MAX_DEPTH} levels deep"
            if isinstance(item, dict):
                for key, child in item.items():
                    key_message = _key_problem(key)
                    if key_message:
                        return _place(path), key_message
                    stack.append((child, (path, key), depth + 1))
            else:
                stack.extend((child, (path, index), depth + 1) for index, child in enumerate(item))
            continue
        else:
            message = f"must be JSON ({_TYPE_NAMES}); got {type(item).__name__}"
        if message:
            return _place(path), message
    return None


def _key_problem(key: Any) -> str | None:
    if isinstance(key, str):
        problem = text_problem(key)
        return f"has a key that {problem}" if problem else None
    if isinstance(key, int) and not isinstance(key, bool) and MIN_INT <= key <= MAX_INT:
        return None
    return f"has a key {key!r} of type {type(key).__name__}: JSON object keys are strings"


def _place(path: tuple | None) -> str:
    """Python-style subscripts from the top: ["items"][3]."""
    keys = []
    while path is not None:
        path, key = path
        keys.append(key)
    return "".join(f"[{json.dumps(key) if isinstance(key, str) else key}]" for key in reversed(keys))
