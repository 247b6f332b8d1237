"""Name -> class registries, filled by decorators, so the CLI and the tests can loop over them."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from forgetless.errors import resolve_name

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps registered names to objects.

    ``discover`` names a package whose modules are imported (recursively) on first lookup, so a
    new strategy file registers itself just by existing: nobody edits a central list.
    """

    def __init__(self, kind: str, discover: str | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._discover = discover
        self._discovered = discover is None

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = obj
            return obj

        return decorate

    def _ensure_discovered(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self._discover)
        for module in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
            importlib.import_module(module.name)

    def canonical(self, name: str) -> str:
        """The registered spelling of ``name``: names match case-insensitively (``EWC`` is
        ``ewc``), so a run id never depends on how a user typed a name."""
        self._ensure_discovered()
        return resolve_name(self.kind, name, self._entries)

    def get(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def names(self) -> list[str]:
        self._ensure_discovered()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._ensure_discovered()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._entries[name]) for name in self.names()]
