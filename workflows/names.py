"""What names and ids may be: workflow, step and event-type names, and instance ids.

Pure Python. One home for these rules, so a NUL character or a lone surrogate (which no
database column can hold) is refused with a clear error wherever a name comes in.
"""

from __future__ import annotations

import re
from typing import Any

MAX_WORKFLOW_NAME = 200
MAX_STEP_NAME = 256
MAX_EVENT_TYPE = 200
MAX_INSTANCE_ID = 100

# "@" for scheduled instances: nightly-billing@2026-12-01T03:00Z.
_INSTANCE_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.:@-]{{0,{MAX_INSTANCE_ID - 1}}}")


def text_problem(text: str) -> str | None:
    """What makes `text` impossible to store, or None."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which cannot be stored"
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            return "contains a lone surrogate (invalid Unicode), which cannot be stored"
    return None


def checked_name(value: Any, *, what: str, max_length: int) -> str:
    """`value` if it is a storable, non-blank string of at most `max_length` characters."""
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise ValueError(
            f"{what} must be a non-empty string of at most {max_length} characters, got {shown(value)}"
        )
    problem = text_problem(value)
    if problem:
        raise ValueError(f"{what} {shown(value)} {problem}")
    return value


def is_instance_id(value: Any) -> bool:
    return isinstance(value, str) and _INSTANCE_ID.fullmatch(value) is not None


def checked_instance_id(value: Any) -> str:
    if not is_instance_id(value):
        raise ValueError(
            f"invalid instance id {shown(value)}: use 1-{MAX_INSTANCE_ID} letters, digits, "
            "'_', '-', '.', ':' or '@', starting with a letter or digit"
        )
    return value


def shown(value: Any) -> str:
    """A short, printable form of a bad value for an error message."""
    text = ascii(value)
    return text if len(text) <= 80 else text[:77] + "..."
