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


def test_a_lazy_entry_imports_its_module_on_first_get() -> None:
    reg: Registry[object] = Registry("codec")
    reg.register_lazy("json-dumps", "json:dumps")
    reg.register_lazy("csv-reader", "csv:reader")
    assert "json-dumps" in reg and reg.names() == ["csv-reader", "json-dumps"]
    import json

    assert reg.get("json-dumps") is json.dumps
    with pytest.raises(RegistryError, match="codec 'json-dumps' is already registered"):
        reg.register_lazy("json-dumps", "json:loads")
    with pytest.raises(RegistryError, match="must be 'module:attribute'"):
        reg.register_lazy("bad", "json.dumps")
    reg.register("csv-reader", "eager")  # a module registering itself replaces the placeholder
    assert reg.get("csv-reader") == "eager"


def test_local_tiny_clip_resolves_without_importing_vision_first() -> None:
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from synthtune.models import LOCAL_MODELS\n"
        "assert 'synthtune.vision.clip_model' not in sys.modules\n"
        "assert 'local-tiny-clip' in LOCAL_MODELS\n"
        "builder = LOCAL_MODELS.get('local-tiny-clip')\n"
        "from synthtune.vision.clip_model import ensure_local_tiny_clip\n"
        "assert builder is ensure_local_tiny_clip\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
