"""Merging LoRA into the base: same logits as base+adapter, EOS saved, and a wrong base fails."""

import shutil
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, GenerationConfig

from synthtune.errors import StageError
from synthtune.export.merge import merge_adapter
from synthtune.models import load_causal_lm

PROMPT = "<|user|>\nPatient 3 has a cough.\n<|assistant|>\n"
REPLY = "Rest.</s>"


def _base_without_eos(tiny_model_dir: Path, folder: Path) -> Path:
    """A copy of the tiny model whose generation config knows no EOS (so export must set it)."""
    shutil.copytree(tiny_model_dir, folder)
    GenerationConfig(do_sample=False).save_pretrained(folder)
    return folder


def _train_adapter(base: Path, out: Path, steps: int) -> None:
    """LoRA taught to answer PROMPT with a short reply ending in EOS."""
    torch.manual_seed(0)
    model, tokenizer = load_causal_lm(str(base), device=torch.device("cpu"), dtype="float32")
    config = LoraConfig(
        r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False, lora_dropout=0.0
    )
    model = get_peft_model(model, config)
    model.train()
    ids = tokenizer(PROMPT + REPLY, return_tensors="pt")["input_ids"]
    prompt_len = len(tokenizer(PROMPT)["input_ids"])
    labels = ids.clone()
    labels[:, :prompt_len] = -100
    # 5e-3: at 2e-2 this one-layer model oscillated and answered "Resesest."
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    for _ in range(steps):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out)


@pytest.mark.slow
def test_merged_model_matches_adapter_and_stops_at_eos(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    base = _base_without_eos(tiny_model_dir, tmp_path / "base")
    _train_adapter(base, tmp_path / "adapter", steps=120)
    summary = merge_adapter(
        str(base), tmp_path / "adapter", tmp_path / "merged", [PROMPT, "Hello there"], 1e-4
    )
    assert summary["merged"] and summary["max_abs_logit_diff"] <= 1e-4

    # loaded as any user would: plain transformers, no synthtune defaults
    from transformers import AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    assert tokenizer.chat_template and model.generation_config.eos_token_id is not None
    enc = tokenizer(PROMPT, return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=40, do_sample=False)[0, enc["input_ids"].shape[1] :]
    assert out[-1].item() == tokenizer.eos_token_id
    assert len(out) < 40  # stopped at EOS, did not run to the limit
    assert "Rest" in tokenizer.decode(out, skip_special_tokens=True)


def test_a_broken_merge_is_an_error(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peft.tuners.lora import LoraModel

    base = _base_without_eos(tiny_model_dir, tmp_path / "base")
    _train_adapter(base, tmp_path / "adapter", steps=2)
    original = LoraModel.merge_and_unload

    def drops_one_module(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        merged = original(self, *args, **kwargs)
        with torch.no_grad():  # as if one adapted layer had been left out of the merge
            merged.model.layers[0].self_attn.q_proj.weight.add_(0.01)
        return merged

    monkeypatch.setattr(LoraModel, "merge_and_unload", drops_one_module)
    with pytest.raises(StageError, match="merge_tolerance"):
        merge_adapter(str(base), tmp_path / "adapter", tmp_path / "merged", [PROMPT], 1e-4)
    assert not (tmp_path / "merged").exists()


def test_the_merge_bound_scales_with_the_largest_logit(tmp_path: Path) -> None:
    from synthtune.export.merge import check_merge

    # SmolLM2-135M after a correct merge: 1.16e-4 with logits up to ~30 (health-tweets-lm)
    check_merge(1.16e-4, 1e-4, "model", "8 prompts", tmp_path, scale=30.0)
    with pytest.raises(StageError, match=r"x largest \|logit\| 30"):
        check_merge(4e-3, 1e-4, "model", "8 prompts", tmp_path, scale=30.0)
    with pytest.raises(StageError):  # small logits: the bound never drops below tolerance x 1
        check_merge(2e-4, 1e-4, "model", "8 prompts", tmp_path, scale=0.1)
    with pytest.raises(StageError):
        check_merge(float("nan"), 1e-4, "model", "8 prompts", tmp_path, scale=30.0)
