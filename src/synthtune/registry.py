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
        self._lazy: dict[str, str] = {}  # name -> "module:attribute", imported on first get

    def _check_name(self, name: str) -> None:
        if not name or not name.replace("-", "_").replace("_", "a").isalnum():
            raise RegistryError(f"invalid {self.kind} name {name!r}: use letters, digits, - or _")

    def register(self, name: str, item: T) -> T:
        self._check_name(name)
        if name in self._items:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        self._lazy.pop(name, None)  # the module a lazy entry pointed at registers itself
        self._items[name] = item
        return item

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``name`` without importing it: ``target`` is ``"package.module:attr"``,
        imported on the first :meth:`get` (so a heavy module loads only when a recipe names
        it). The module may register the name itself on import; otherwise ``attr`` is used."""
        self._check_name(name)
        if name in self._items or name in self._lazy:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        if ":" not in target:
            raise RegistryError(f"lazy {self.kind} {name!r}: target must be 'module:attribute'")
        self._lazy[name] = target

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return its item (a plugin unloaded, a test's stand-in)."""
        self.get(name)  # the usual error for an unknown name (and a lazy one resolved)
        return self._items.pop(name)

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@REGISTRY.decorator("name")`` form of :meth:`register`."""

        def wrap(item: T) -> T:
            return self.register(name, item)

        return wrap

    def get(self, name: str) -> T:
        if name not in self._items and name in self._lazy:
            import importlib

            module_name, attribute = self._lazy.pop(name).split(":", 1)
            module = importlib.import_module(module_name)
            if name not in self._items:  # the module did not register it on import
                self._items[name] = getattr(module, attribute)
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise RegistryError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted({*self._items, *self._lazy})

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
