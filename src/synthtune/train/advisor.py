"""The method advisor: which training method fits this model, dataset and machine.

It encodes the seed's table (full fine-tuning: most compute, for a large task shift; LoRA:
under 1 % of parameters, for limited hardware; prefix tuning: about 0.1 %, lowest serving
latency) with memory arithmetic: full fine-tuning with AdamW in fp32 needs about 16 bytes per
parameter (weights 4, gradients 4, two optimizer moments 8) before activations; adapters need
the frozen weights (4 bytes/param fp32, 2 in bf16, ~0.5 in 4-bit NF4) plus a small trainable
part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

GIB = 1024**3


@dataclass(frozen=True)
class Hardware:
    device: str  # "cuda" or "cpu"
    memory_bytes: int

    @classmethod
    def detect(cls) -> Hardware:
        if torch.cuda.is_available():
            return cls("cuda", torch.cuda.get_device_properties(0).total_memory)
        import psutil

        return cls("cpu", psutil.virtual_memory().total)


def count_parameters(name_or_path: str) -> int:
    """Parameters of a model from its config alone (no weights loaded)."""
    from transformers import AutoConfig

    return count_parameters_from_config(AutoConfig.from_pretrained(name_or_path))


def recipe_facts(recipe: Any, run_dir: Any) -> tuple[str, int, int]:
    """(base model, its parameter count, training examples) for a recipe and its run dir.

    local-tiny is counted from the built folder when it exists, else from the recipe's
    local_tiny section; examples come from mix/train when mixed, else from generate.n.
    """
    from pathlib import Path

    from synthtune.errors import StageError
    from synthtune.models import LOCAL_TINY, tiny_llama_config
    from synthtune.store import RunStore

    run_dir = Path(run_dir)
    base = recipe.train.base
    built = run_dir / "models" / LOCAL_TINY
    try:
        if base == LOCAL_TINY and not built.exists():
            cfg = tiny_llama_config(recipe.local_tiny.vocab_size, recipe.local_tiny)
            parameters = count_parameters_from_config(cfg)
        else:
            parameters = count_parameters(str(built) if base == LOCAL_TINY else base)
    except OSError as exc:
        raise StageError(f"train.base {base!r}: cannot read its config ({exc})") from None
    mix = run_dir / "mix" / "train.parquet"
    examples = (
        len(RunStore(run_dir).read_table("mix", "train")) if mix.exists() else (recipe.generate.n)
    )
    return base, parameters, examples


def base_config(recipe: Any, run_dir: Any) -> Any:
    """The base model's config: local-tiny's from its folder or the recipe, else the hub/path."""
    from pathlib import Path

    from transformers import AutoConfig

    from synthtune.errors import StageError
    from synthtune.models import LOCAL_TINY, tiny_llama_config

    base = recipe.train.base
    built = Path(run_dir) / "models" / LOCAL_TINY
    try:
        if base == LOCAL_TINY and not built.exists():
            return tiny_llama_config(recipe.local_tiny.vocab_size, recipe.local_tiny)
        return AutoConfig.from_pretrained(str(built) if base == LOCAL_TINY else base)
    except OSError as exc:
        raise StageError(f"train.base {base!r}: cannot read its config ({exc})") from None


def count_parameters_from_config(config: Any) -> int:
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters()) - untied_duplicate(model)


def untied_duplicate(model: Any) -> int:
    """Parameters counted twice because meta initialisation leaves tied embeddings untied."""
    if not getattr(model.config, "tie_word_embeddings", False):
        return 0
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    if out is None or out.weight is inp.weight:
        return 0
    return int(out.weight.numel())


def advise(examples: int, parameters: int, hardware: Hardware) -> list[dict[str, Any]]:
    """Methods ranked best first, each with whether it fits in memory and why."""
    weights_bytes = 2 if hardware.device == "cuda" else 4  # bf16 on GPU, fp32 on CPU
    budget = 0.8 * hardware.memory_bytes  # leave room for activations and the runtime
    full_bytes = 16 * parameters
    adapter_bytes = weights_bytes * parameters + 16 * 0.01 * parameters
    qlora_bytes = 0.5 * parameters + 16 * 0.01 * parameters
    rows: list[dict[str, Any]] = [
        {
            "method": "full",
            "fits": full_bytes <= budget,
            "memory_gib": full_bytes / GIB,
            "trainable": "100 %",
            "why": "most compute; worth it for a large task shift and a large dataset",
            "score": (2 if examples >= 50_000 else 0) + (1 if full_bytes <= budget / 2 else 0),
        },
        {
            "method": "lora",
            "fits": adapter_bytes <= budget,
            "memory_gib": adapter_bytes / GIB,
            "trainable": "< 1 %",
            "why": "the default: < 1 % of parameters, works on limited hardware",
            "score": 2,
        },
        {
            "method": "qlora",
            "fits": hardware.device == "cuda" and qlora_bytes <= budget,
            "memory_gib": qlora_bytes / GIB,
            "trainable": "< 1 %",
            "why": "LoRA on a 4-bit base: when the bf16 weights do not fit the GPU",
            "score": 3 if hardware.device == "cuda" and adapter_bytes > budget else -1,
        },
        {
            "method": "prefix",
            "fits": adapter_bytes <= budget,
            "memory_gib": adapter_bytes / GIB,
            "trainable": "~0.1 %",
            "why": "~0.1 % of parameters, lowest serving latency; best with little data",
            "score": 2.5 if examples < 1_000 else 1,
        },
    ]
    for row in rows:
        if not row["fits"]:
            row["score"] -= 10
    return sorted(rows, key=lambda r: -float(r["score"]))
