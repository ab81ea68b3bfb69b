"""Registry: refuses duplicates and bad names, lists the known names on a miss, unregisters."""

import pytest

from synthtune.errors import RegistryError
from synthtune.registry import Registry


def test_register_get_unregister() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("a", 1)
    with pytest.raises(RegistryError, match="widget 'a' is already registered"):
        reg.register("a", 2)
    with pytest.raises(RegistryError, match="invalid widget name"):
        reg.register("a b", 3)
    assert reg.get("a") == 1 and "a" in reg and reg.names() == ["a"]
    assert reg.unregister("a") == 1 and "a" not in reg
    with pytest.raises(RegistryError, match="unknown widget 'a'; known: none"):
        reg.unregister("a")
    reg.register("a", 4)  # the name is free again
    assert reg.get("a") == 4
