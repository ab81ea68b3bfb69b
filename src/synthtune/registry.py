"""Name -> implementation registries (backends, samplers, rules, methods...).

One explicit ``register`` call per implementation, checked for duplicates, so a user adds a
backend or a training method in one file without editing a switch statement. A registry with
an entry-point ``group`` (``synthtune.backends``...) also lists the names that installed
distributions declare there, and imports such a plugin only when its name is first asked for
(so a recipe that does not name a plugin never imports it). The public registration calls
are in :mod:`synthtune.plugins`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from synthtune.errors import RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named mapping that refuses duplicates and lists the valid names on a miss."""

    def __init__(self, kind: str, group: str | None = None) -> None:
        self.kind = kind
        self.group = group  # entry-point group of third-party plugins, e.g. synthtune.backends
        self._items: dict[str, T] = {}
        self._lazy: dict[str, str] = {}  # name -> "module[:attribute]", imported on first get
        self._configs: dict[str, Any] = {}  # name -> its pydantic config model, when it has one
        self._origin: dict[str, str] = {}  # name -> the entry point that declared it
        self._discovered = group is None

    def _discover(self) -> None:
        """Declare (not import) the names installed distributions give in ``group``. Read
        once per process, on the first miss or listing: ~5 ms with 300 distributions."""
        if self._discovered:
            return
        self._discovered = True
        from importlib.metadata import entry_points

        for point in entry_points(group=str(self.group)):
            if point.name in self._items or point.name in self._lazy:
                continue  # a built-in (or an earlier distribution) keeps the name
            self._lazy[point.name] = point.value
            dist = getattr(point, "dist", None)
            self._origin[point.name] = (
                f"{point.value} (entry point of {getattr(dist, 'name', '?')})"
            )

    def _check_name(self, name: str) -> None:
        if not name or not name.replace("-", "_").replace("_", "a").isalnum():
            raise RegistryError(f"invalid {self.kind} name {name!r}: use letters, digits, - or _")

    def register(self, name: str, item: T, config: Any = None) -> T:
        """Add ``item`` under ``name``; ``config`` is its pydantic config model when the
        concept has one (a backend's section), validated with field paths like a built-in."""
        self._check_name(name)
        if name in self._items:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        self._lazy.pop(name, None)  # the module a lazy entry pointed at registers itself
        self._items[name] = item
        if config is not None:
            self._configs[name] = config
        return item

    def register_lazy(self, name: str, target: str, config: Any = None) -> None:
        """Register ``name`` without importing it: ``target`` is ``"package.module:attr"``,
        imported on the first :meth:`get` (so a heavy module loads only when a recipe names
        it). The module may register the name itself on import; otherwise ``attr`` is used.
        ``config`` (a light model) is known without the import, for validating recipes."""
        self._check_name(name)
        if name in self._items or name in self._lazy:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        if ":" not in target:
            raise RegistryError(f"lazy {self.kind} {name!r}: target must be 'module:attribute'")
        self._lazy[name] = target
        if config is not None:
            self._configs[name] = config

    def config(self, name: str) -> Any:
        """The config model of ``name`` (importing its plugin if needed), or None."""
        if name not in self._configs:
            self.get(name)
        return self._configs.get(name)

    def name_of_config(self, model: Any) -> str:
        """The name registered with config model ``model`` (it validated a recipe section)."""
        for name, config in self._configs.items():
            if config is model:
                return name
        raise RegistryError(f"no {self.kind} is registered with config {model.__name__}")

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
        if name not in self._items and name not in self._lazy:
            self._discover()
        if name not in self._items and name in self._lazy:
            self._resolve(name)
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise RegistryError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def _resolve(self, name: str) -> None:
        import importlib

        target = self._lazy.pop(name)
        module_name, _, attribute = target.partition(":")
        origin = self._origin.get(name, target)
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # a broken plugin is named, not a bare traceback
            raise RegistryError(
                f"{self.kind} {name!r}: importing {origin} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if name in self._items:  # the module registered it on import
            return
        if not attribute or not hasattr(module, attribute):
            raise RegistryError(
                f"{self.kind} {name!r}: {origin} did not register {name!r} on import"
                + (f" and has no attribute {attribute!r}" if attribute else "")
            )
        self._items[name] = getattr(module, attribute)

    def is_plugin(self, name: str) -> bool:
        """Declared by an installed distribution's entry point (not built in)."""
        self._discover()
        return name in self._origin

    def names(self) -> list[str]:
        self._discover()
        return sorted({*self._items, *self._lazy})

    def __contains__(self, name: object) -> bool:
        if name not in self._items and name not in self._lazy:
            self._discover()
        return name in self._items or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
