"""The clip training task's pieces: the tiny CLIP folder, class prompts, the label-aware
contrastive loss, and LoRA / layered learning rates / freezing applied through the same
train-stage code as for text models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from synthtune.config import TrainConfig
from synthtune.records import Message, Payload, Record
from synthtune.train.methods import METHODS
from synthtune.train.param_groups import apply_freezing, group_table, param_groups
from synthtune.vision.clip_model import build_tiny_clip, load_clip
from synthtune.vision.clip_task import (
    ClipClassifier,
    build_classifier,
    class_prompts,
    contrastive_loss,
)

LABELS = ["crack", "scratch"]
PROMPTS = [["a photo of a crack on metal"], ["a photo of a scratch on metal"]]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clip")
    build_tiny_clip(out, [p for group in PROMPTS for p in group], seed=0)
    return out


def _record(label: str, material: str) -> Record:
    payload = Payload(
        messages=[Message(role="user", content=f"{label} on {material}")], label=label
    )
    return Record.create("synthetic", payload, lineage={"slots": {"material": material}})


def test_tiny_clip_is_a_normal_hf_folder_whose_text_pools_at_end_of_text(clip_dir: Path) -> None:
    model, processor = load_clip(str(clip_dir))
    tokenizer = processor.tokenizer
    ids = tokenizer("a photo of a crack")["input_ids"]
    # CLIP pools the text at the first end-of-text token; id 2 would switch that off
    assert ids[-1] == tokenizer.eos_token_id == model.config.text_config.eos_token_id != 2
    padded = tokenizer(["a crack", "a photo of a long scratch"], padding=True, return_tensors="pt")
    alone = tokenizer(["a crack"], return_tensors="pt")
    with torch.no_grad():
        both = model.get_text_features(**padded).pooler_output
        single = model.get_text_features(**alone).pooler_output
    assert torch.allclose(both[0], single[0], atol=1e-5)  # padding does not change a text


def test_class_prompts_fill_slots_and_fall_back_to_the_label() -> None:
    records = [_record("crack", "metal"), _record("crack", "brick"), _record("crack", "metal")]
    prompts = class_prompts("a photo of a {label} on {material}", ["crack", "dent"], records)
    assert prompts == [
        ["a photo of a crack on metal", "a photo of a crack on brick"],
        ["a photo of a dent"],
    ]


def test_contrastive_loss_counts_same_label_pairs_as_positives() -> None:
    torch.manual_seed(0)
    a, b = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    images = torch.stack([a, a, b])  # two images of class 0, one of class 1
    scale = torch.tensor(10.0)
    labels = torch.tensor([0, 0, 1])
    aligned = contrastive_loss(images, images.clone(), scale, labels)
    swapped = contrastive_loss(images, images[[2, 1, 0]], scale, labels)
    assert aligned < swapped
    # identity targets would call images 0 and 1 (equal) negatives of each other's captions
    assert aligned < contrastive_loss(images, images.clone(), scale, None)


@pytest.mark.parametrize("objective", ["contrastive", "head"])
def test_lora_on_both_towers_with_layered_lrs(clip_dir: Path, objective: str) -> None:
    cfg = TrainConfig(task="clip", lr={"adapter": 2e-3})
    model, _ = build_classifier(str(clip_dir), LABELS, PROMPTS, objective)
    model = METHODS.get("lora").prepare(model, cfg)
    apply_freezing(model, cfg)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("vision_model" in n and "lora_" in n for n in trainable)
    assert any("text_model" in n and "lora_" in n for n in trainable)
    heads = [n for n in trainable if "classifier" in n]
    assert bool(heads) == (objective == "head")  # a head trains (and is saved) with LoRA
    assert all("lora_" in n or "classifier" in n for n in trainable)
    assert {g["lr"] for g in param_groups(model, cfg)} == {2e-3}
    assert {row["group"] for row in group_table(model, cfg)} == {"adapter", "frozen"}


def test_full_training_freezes_first_blocks_and_keeps_the_head_at_the_adapter_lr(
    clip_dir: Path,
) -> None:
    cfg = TrainConfig(
        task="clip", method="full", clip={"objective": "head"}, freeze={"first_n_layers": 1}
    )
    model = METHODS.get("full").prepare(
        build_classifier(str(clip_dir), LABELS, PROMPTS, "head")[0], cfg
    )
    apply_freezing(model, cfg)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    for tower in ("vision_model", "text_model"):  # first block frozen in both towers
        assert not any(f"{tower}.encoder.layers.0." in n for n in trainable)
        assert any(f"{tower}.encoder.layers.1." in n for n in trainable)
    assert not any("norm" in n for n in trainable)  # freeze.layernorm (pre_layrnorm too)
    by_lr = {g["lr"]: g for g in param_groups(model, cfg)}
    adapter_lr, base_lr = cfg.learning_rates()
    assert set(by_lr) == {adapter_lr, base_lr}
    head = {id(p) for p in model.classifier.parameters()}  # type: ignore[union-attr]
    assert head <= {
        id(p) for g in param_groups(model, cfg) if g["lr"] == adapter_lr for p in g["params"]
    }


def test_saved_classifier_reloads_with_the_same_scores(clip_dir: Path, tmp_path: Path) -> None:
    from synthtune.vision.clip_task import load_tuned_classifier

    torch.manual_seed(1)
    model, processor = build_classifier(str(clip_dir), LABELS, PROMPTS, "head")
    model.save_pretrained(tmp_path / "tuned")
    processor.save_pretrained(tmp_path / "tuned")
    again, _ = load_tuned_classifier(tmp_path / "tuned", str(clip_dir))
    pixels = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.eval()(pixels).logits, again(pixels).logits, atol=1e-6)
    assert isinstance(again, ClipClassifier) and again.labels == LABELS


def test_adversarial_training_with_the_clip_task_is_refused_before_any_work(
    tmp_path: Path,
) -> None:
    import yaml

    from synthtune.config import load_recipe
    from synthtune.errors import RecipeError
    from synthtune.pipeline import check_recipe
    from tests.conftest import ROOT

    recipe = yaml.safe_load((ROOT / "examples/defect-inspection/recipe.yaml").read_text())
    recipe["train"]["adversarial"] = {"method": "fgm"}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(RecipeError, match=r"train\.adversarial"):
        check_recipe(load_recipe(path))
    assert not (tmp_path / "runs").exists()
