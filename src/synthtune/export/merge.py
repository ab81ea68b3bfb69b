"""Merge a LoRA adapter into its base and prove the merged model computes the same function.

``merge_and_unload`` folds ``B @ A * alpha / r`` into each target weight; in fp32 the merged
logits match base+adapter up to float rounding (~1e-6 on small models), so a diff above the
tolerance means a broken merge (wrong base, dropped module, tied weights), not noise.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthtune.errors import StageError
from synthtune.lazy import inference_mode
from synthtune.models import load_causal_lm

if TYPE_CHECKING:
    import torch


@inference_mode
def prompt_logits(model: Any, tokenizer: Any, prompts: Sequence[str]) -> list[torch.Tensor]:
    """fp32 logits of each prompt, one forward pass per prompt (no padding to differ)."""
    out = []
    for text in prompts:
        enc = tokenizer(text, return_tensors="pt").to(next(model.parameters()).device)
        out.append(model(**enc).logits.float().cpu())
    return out


def set_generation_defaults(model: Any, tokenizer: Any) -> None:
    """EOS and pad in both config and generation config, so ``generate`` stops at EOS."""
    for cfg in (model.config, model.generation_config):
        cfg.eos_token_id = tokenizer.eos_token_id
        cfg.pad_token_id = tokenizer.pad_token_id
        if tokenizer.bos_token_id is not None:
            cfg.bos_token_id = tokenizer.bos_token_id


def check_merge(
    diff: float, tolerance: float, what: str, checked: str, adapter: Path, scale: float = 1.0
) -> None:
    """Raise ``StageError`` unless max |logit diff| <= ``tolerance`` x ``scale`` (NaN fails).

    ``scale`` is the largest |logit| of the reference (at least 1): fp32 rounding of a merged
    matmul grows with the size of what it computes, so a fixed absolute bound fails real
    models for no reason (SmolLM2-135M, logits up to ~30: 1.2e-4 after a correct merge),
    while a wrong base differs by a sizeable share of the logits themselves."""
    bound = tolerance * max(1.0, scale)
    if not diff <= bound:
        raise StageError(
            f"export.merge: merged {what} differs from base+adapter by {diff:.3g} "
            f"(> export.merge_tolerance {tolerance:g} x largest |logit| {max(1.0, scale):.3g}) "
            f"on {checked}; check that train.base is the model {adapter} was trained on"
        )


def save_model_folder(model: Any, tokenizer: Any, out_dir: Path) -> None:
    """``out_dir`` replaced by the model (safetensors) and its tokenizer."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def merge_adapter(
    base_path: str,
    adapter_dir: Path,
    out_dir: Path,
    prompts: Sequence[str],
    tolerance: float,
) -> dict[str, Any]:
    """Save base+adapter merged into ``out_dir`` (weights, tokenizer, chat template, generation
    config) after checking max |logits(merged) - logits(base+adapter)| <= ``tolerance``.

    Raises ``StageError`` when the check fails; nothing is written then.
    """
    import torch
    from peft import PeftModel

    base, tokenizer = load_causal_lm(base_path, device=torch.device("cpu"), dtype="float32")
    peft_model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    reference = prompt_logits(peft_model, tokenizer, prompts)
    merged = peft_model.merge_and_unload()
    diff = max(
        float((a - b).abs().max())
        for a, b in zip(reference, prompt_logits(merged, tokenizer, prompts), strict=True)
    )
    scale = max(float(a.abs().max()) for a in reference)
    check_merge(diff, tolerance, "model", f"{len(prompts)} prompts", adapter_dir, scale)
    set_generation_defaults(merged, tokenizer)
    save_model_folder(merged, tokenizer, out_dir)
    return {
        "merged": True,
        "prompts": len(prompts),
        "max_abs_logit_diff": diff,
        "logit_scale": scale,
        "tolerance": tolerance,
        "path": str(out_dir),
    }


def save_full_model(model_dir: Path, out_dir: Path) -> dict[str, Any]:
    """A full fine-tune has nothing to merge: re-save it with EOS/pad generation defaults."""
    import torch

    model, tokenizer = load_causal_lm(str(model_dir), device=torch.device("cpu"), dtype="float32")
    set_generation_defaults(model, tokenizer)
    save_model_folder(model, tokenizer, out_dir)
    return {"merged": False, "reason": "full fine-tune (no adapter)", "path": str(out_dir)}
