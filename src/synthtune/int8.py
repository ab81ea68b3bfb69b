"""CPU int8 backends by name: the export stage measures them and picks the fastest
(``export/quantize.json`` names it), the evaluate stage re-applies the named one to load the
saved int8 weights. A core module, so neither stage imports the other."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from synthtune.registry import Registry

Quantizer = Callable[[Any], Any]
INT8_CPU: Registry[Quantizer] = Registry("int8 CPU backend")


@INT8_CPU.decorator("torch-ao-dynamic")
def torch_dynamic_int8(model: Any) -> Any:
    """int8 weights, activations quantized per batch at run time (nn.Linear only)."""
    import torch

    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


@INT8_CPU.decorator("torchao-int8-dynamic")
def torchao_int8(model: Any) -> Any:
    """torchao's Int8DynamicActivationInt8WeightConfig (fast with AMX/VNNI, slow on AVX2)."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantize_(model, Int8DynamicActivationInt8WeightConfig())
    return model


def available_int8_backends() -> list[str]:
    return [n for n in INT8_CPU.names() if n != "torchao-int8-dynamic" or _has("torchao")]


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
