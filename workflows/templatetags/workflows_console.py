"""Template helpers for the console: JSON shown pretty and cut short, durations."""

import json
from datetime import timedelta
from typing import Any

from django import template

register = template.Library()

PREVIEW_CHARS = 400
PREVIEW_LINES = 10


@register.inclusion_tag("workflows/_json.html")
def json_block(value: Any) -> dict[str, Any]:
    """Pretty JSON; long values show a preview and the whole behind "show all"."""
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    lines = text.splitlines()
    long = len(text) > PREVIEW_CHARS or len(lines) > PREVIEW_LINES
    preview = "\n".join(lines[:PREVIEW_LINES])[:PREVIEW_CHARS] + " …" if long else text
    return {"text": text, "preview": preview, "long": long, "size": len(text)}


@register.filter
def milliseconds(value: float | None) -> str:
    """A step duration: "12 ms", "3.4 s", "2 min 5 s"."""
    if value is None:
        return "–"
    if value < 1000:
        return f"{value:.0f} ms"
    return seconds(timedelta(milliseconds=value))


@register.filter
def seconds(value: timedelta | None) -> str:
    """A wall-clock length: "3.4 s", "2 min 5 s", "3 d 4 h"."""
    if value is None:
        return "–"
    total = value.total_seconds()
    if total < 60:
        return f"{total:.1f} s"
    minutes, secs = divmod(int(total), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s"
