"""The process-wide registries of webhooks and consumers: a name is registered when the
module defining its handler is imported (as @workflow does)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from ..names import checked_name

Handler = Callable[[Any, Any], Any]


class _Registered(Protocol):
    name: str
    handler: Handler


Entry = TypeVar("Entry", bound=_Registered)


def setting_value(name: str) -> str | None:
    """The Django setting `name`, else the environment variable `name`, else None (a
    secret or a broker URL: a deployment sets it one way or the other)."""
    import os

    from django.conf import settings

    value = getattr(settings, name, None) or os.environ.get(name)
    return str(value) if value else None


def unset_setting_warnings(
    kind: str, unset: list[tuple[str, str]], *, lacks: str, effect: str, hint: str, check_id: str
) -> list:
    """System-check warnings for the (name, setting) of each registered `kind` whose
    setting is unset: `f'{kind} "{name}" has no {lacks}: ... so it {effect}.'`."""
    from django.core import checks

    return [
        checks.Warning(
            f'{kind} "{name}" has no {lacks}: {setting} is neither a setting nor an environment '
            f"variable, so it {effect}.",
            hint=f"Set {setting} to {hint}.",
            id=check_id,
        )
        for name, setting in unset
    ]


class Registry(Generic[Entry]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def add(self, entry: Entry) -> None:
        checked_name(entry.name, what=f"{self.kind} name", max_length=100)
        existing = self._entries.get(entry.name)
        if existing is not None and _qualified(existing.handler) != _qualified(entry.handler):
            raise ValueError(
                f'{self.kind} "{entry.name}" is already registered to {_qualified(existing.handler)}; '
                f"cannot register {_qualified(entry.handler)} under the same name"
            )
        # The same function imported twice (module reloaded) simply replaces itself.
        self._entries[entry.name] = entry

    def get(self, name: str, *, missing: type[LookupError] = LookupError) -> Entry:
        """The entry registered as `name`; raises `missing` naming the ones there are."""
        entry = self._entries.get(name)
        if entry is None:
            known = ", ".join(self.names()) or "none"
            raise missing(f'no {self.kind} named "{name}" is registered (known: {known})')
        return entry

    def names(self) -> list[str]:
        return sorted(self._entries)

    def all(self) -> list[Entry]:
        return [self._entries[name] for name in self.names()]

    def remove(self, name: str) -> None:
        """Forget `name` (tests that register a handler for themselves)."""
        self._entries.pop(name, None)


def _qualified(fn: Callable) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"
