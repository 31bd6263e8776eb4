"""What came in, before any handler sees it: within the payload limit and JSON."""

from __future__ import annotations

import json
from typing import Any

from ..errors import PayloadTooLarge
from ..payloads import max_payload_bytes


class MalformedBody(ValueError):
    """The request body is not JSON."""


def check_size(size: int) -> None:
    """PayloadTooLarge when a body of `size` bytes is over the payload limit."""
    limit = max_payload_bytes()
    if size > limit:
        raise PayloadTooLarge(
            f"the body is {size:,} bytes, over the limit of {limit:,} bytes (DURABLE_MAX_PAYLOAD_BYTES)"
        )


def parse_body(raw: bytes) -> Any:
    """The body as JSON (NaN and Infinity are not JSON); MalformedBody otherwise."""
    try:
        return json.loads(raw, parse_constant=_not_json)
    except RecursionError:
        raise MalformedBody("the body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer too long
        raise MalformedBody(f"the body is not valid JSON: {exc}") from None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")
