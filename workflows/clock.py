"""The engine's one clock. Tests move it forward with workflows.testing.advance."""

from datetime import datetime, timedelta

from django.utils import timezone

_offset = timedelta()


def now() -> datetime:
    """The engine's time: real time, unless workflows.testing.advance moved it."""
    return timezone.now() + _offset


def shift(by: timedelta) -> None:
    global _offset
    _offset += by


def reset() -> None:
    global _offset
    _offset = timedelta()
