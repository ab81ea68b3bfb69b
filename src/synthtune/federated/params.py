"""The adapter state a federation exchanges: peft's trainable state dict as numpy arrays.

Only what ``peft.get_peft_model_state_dict`` returns travels (LoRA A/B matrices, prefix
embeddings, IA3 vectors), in the order of its sorted keys, so client and server agree on
which array is which without sending names. The base model never travels: every party loads
the same base, which :func:`base_fingerprint` checks.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthtune.errors import StageError
from synthtune.store import atomic_write_bytes, atomic_write_json


def adapter_keys(model: Any) -> list[str]:
    from peft import get_peft_model_state_dict

    return sorted(get_peft_model_state_dict(model))


def adapter_arrays(model: Any) -> list[np.ndarray]:
    """The model's adapter state as float32 arrays, in sorted key order."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model)
    return [state[k].detach().cpu().to(torch.float32).numpy().copy() for k in sorted(state)]


def load_adapter_arrays(model: Any, arrays: list[np.ndarray]) -> None:
    """Set the model's adapter state from arrays in :func:`adapter_arrays` order."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    current = get_peft_model_state_dict(model)
    keys = sorted(current)
    if len(keys) != len(arrays):
        raise StageError(
            f"federated: received {len(arrays)} adapter arrays, this model has {len(keys)}; "
            "every party must use the same train.method and adapter settings"
        )
    state = {}
    for key, array in zip(keys, arrays, strict=True):
        if tuple(current[key].shape) != tuple(array.shape):
            raise StageError(
                f"federated: adapter array {key} has shape {tuple(array.shape)}, expected "
                f"{tuple(current[key].shape)}: the parties' adapter settings differ"
            )
        state[key] = torch.from_numpy(np.asarray(array)).to(current[key].dtype)
    set_peft_model_state_dict(model, state)


def base_fingerprint(model: Any) -> str:
    """Hash of the base model's weights (adapters excluded): parties must share the base."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if any(tag in name for tag in ("lora_", "prompt_encoder", "ia3_", "modules_to_save")):
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def full_model_bytes(model: Any) -> int:
    """What full fine-tuning would send per update: every base weight in float32."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return sum(p.numel() for p in base.parameters()) * 4


def save_arrays(path: Path, arrays: list[np.ndarray], meta: dict[str, Any]) -> None:
    """Atomic ``.npz`` of the arrays plus a ``.json`` beside it (written last: the commit)."""
    import io

    buffer = io.BytesIO()
    np.savez(buffer, *arrays)
    atomic_write_bytes(path, buffer.getvalue())
    atomic_write_json(path.with_suffix(".json"), meta)


def load_arrays(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]
