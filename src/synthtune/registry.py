"""Name -> implementation registries (backends, samplers, rules, methods...).

One explicit ``register`` call per implementation, checked for duplicates, so a user adds a
backend or a training method in one file without editing a switch statement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from synthtune.errors import RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named mapping that refuses duplicates and lists the valid names on a miss."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if not name or not name.replace("-", "_").replace("_", "a").isalnum():
            raise RegistryError(f"invalid {self.kind} name {name!r}: use letters, digits, - or _")
        if name in self._items:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return its item (a plugin unloaded, a test's stand-in)."""
        self.get(name)  # the usual error for an unknown name
        return self._items.pop(name)

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@REGISTRY.decorator("name")`` form of :meth:`register`."""

        def wrap(item: T) -> T:
            return self.register(name, item)

        return wrap

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise RegistryError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
