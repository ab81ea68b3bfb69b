"""Every training method trains what it should, saves, and reloads for evaluation."""

import json
import math
from pathlib import Path

import pytest

from synthtune.config import AdversarialConfig, Recipe, TrainConfig, load_recipe
from synthtune.pipeline import run_recipe
from synthtune.train.methods import METHODS
from synthtune.train.param_groups import apply_freezing, group_table, param_groups
from synthtune.train.stage import device_settings
from tests.conftest import write_recipe


def _prepared(tiny_model_dir: Path, cfg: TrainConfig):
    from transformers import AutoModelForCausalLM

    model = METHODS.get(cfg.method).prepare(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg
    )
    apply_freezing(model, cfg)
    return model


@pytest.mark.parametrize(
    ("method", "max_share"),
    [
        ("lora", 0.2),
        ("dora", 0.2),
        ("prefix", 0.2),
        ("prompt", 0.1),
        ("ptuning", 1.0),
        ("ia3", 0.02),
        ("freeze", 1.0),
        ("full", 1.0),
    ],
)
def test_trainable_share_per_method(tiny_model_dir: Path, method: str, max_share: float) -> None:
    model = _prepared(tiny_model_dir, TrainConfig(method=method))
    rows = {r["group"]: r["parameters"] for r in group_table(model, TrainConfig(method=method))}
    trainable = sum(v for k, v in rows.items() if k != "frozen")
    total = trainable + rows.get("frozen", 0)
    assert 0 < trainable <= max_share * total, rows


def test_freeze_trains_only_the_last_blocks(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    layers = base.config.num_hidden_layers
    cfg = TrainConfig(method="freeze", freeze={"train_last_n_layers": 1, "embeddings": True})
    model = _prepared(tiny_model_dir, cfg)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(f"layers.{layers - 1}." in n or "lm_head" in n for n in trainable)
    assert not any("norm" in n for n in trainable)


def test_lora_plus_gives_b_a_larger_learning_rate(tiny_model_dir: Path) -> None:
    cfg = TrainConfig(lora={"plus_ratio": 16.0, "use_rslora": True, "init": "gaussian"})
    model = _prepared(tiny_model_dir, cfg)
    lrs = sorted({g["lr"] for g in param_groups(model, cfg)})
    assert lrs == [1e-3, 16e-3]


def test_qlora_quantizes_the_base_to_4_bit_and_trains(chatty_model_dir: Path, tmp_path) -> None:
    """bitsandbytes' CPU kernels: NF4 base, LoRA adapters, through the whole stage."""
    import bitsandbytes as bnb

    from synthtune.models import load_causal_lm

    cfg = TrainConfig(method="qlora")
    method = METHODS.get("qlora")
    model, _ = load_causal_lm(str(chatty_model_dir), dtype="float32", **method.load_kwargs(cfg))
    model = method.prepare(model, cfg)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    # bitsandbytes CPU kernels need widths divisible by their block size (192 -> MLP 512)
    recipe = write_recipe(
        tmp_path, {"train": {"method": "qlora"}, "local_tiny": {"hidden_size": 192, "heads": 4}}
    )
    result = run_recipe(load_recipe(recipe), tmp_path / "runs", until="train", quiet=True)
    metrics = json.loads((result.run_dir / "train" / "metrics.json").read_text())
    assert metrics["global_step"] > 0 and math.isfinite(metrics["best_eval_loss"])


def test_device_settings_are_fp32_without_checkpointing_on_cpu() -> None:
    recipe = Recipe.model_validate(
        {"name": "t", "generate": {"templates": [{"id": "t", "prompt": "p", "response": "r"}]}}
    )
    assert device_settings(recipe, cuda=False) == {
        "use_cpu": True,
        "bf16": False,
        "fp16": False,
        "gradient_checkpointing": False,
    }
    gpu = device_settings(recipe, cuda=True)
    assert gpu["use_cpu"] is False and gpu["gradient_checkpointing"] is True
    assert gpu["bf16"] or gpu["fp16"]


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("prefix", {}),
        ("ia3", {}),
        ("freeze", {"freeze": {"train_last_n_layers": 1}}),
        (
            "lora",
            {
                "adversarial": {"method": "fgm", "epsilon": 0.5},
                "neftune_alpha": 5.0,
                "gradient_accumulation": 2,
            },
        ),
        ("lora", {"adversarial": {"method": "pgd", "epsilon": 0.5, "steps": 2, "alpha": 0.2}}),
    ],
    ids=["prefix", "ia3", "freeze", "lora-fgm-neftune-accum", "lora-pgd"],
)
def test_methods_train_save_and_evaluate(tmp_path: Path, method: str, extra: dict) -> None:
    recipe = write_recipe(tmp_path, {"train": {"method": method, **extra}})
    result = run_recipe(load_recipe(recipe), tmp_path / "runs", until="evaluate", quiet=True)
    metrics = json.loads((result.run_dir / "train" / "metrics.json").read_text())
    losses = [h["loss"] for h in metrics["log_history"] if "loss" in h]
    assert losses and all(math.isfinite(x) for x in losses)
    ppl = json.loads((result.run_dir / "evaluate" / "metrics.json").read_text())
    tuned = ppl["suites"]["perplexity"]["tuned"]
    assert math.isfinite(tuned) and tuned > 1


def test_adversarial_step_perturbs_the_embedding_output(tiny_model_dir: Path) -> None:
    """The FGM pass sees a different loss than the clean one (the perturbation is real)."""
    from transformers import AutoTokenizer, TrainingArguments

    from synthtune.train.trainer import SynthtuneTrainer, _EmbeddingHook

    cfg = TrainConfig(adversarial=AdversarialConfig(method="fgm", epsilon=5.0))
    model = _prepared(tiny_model_dir, cfg)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    batch = tokenizer(["Patient 3 reports a cough."], return_tensors="pt")
    batch["labels"] = batch["input_ids"].clone()
    args = TrainingArguments(output_dir="/tmp/unused", use_cpu=True, report_to=[])
    trainer = SynthtuneTrainer(model=model, args=args, adversarial=cfg.adversarial)
    hook = _EmbeddingHook(model.get_input_embeddings())
    clean = trainer.compute_loss(model, batch)
    clean.backward()
    adv = trainer._adversarial_step(model, batch, hook, None)
    hook.remove()
    assert adv.item() > clean.item()  # the step ascends the loss, as FGM should


def test_schedule_and_accumulation_reach_the_trainer_arguments(tmp_path: Path) -> None:
    from synthtune.train.schedule import resolve_schedule
    from synthtune.train.stage import training_arguments

    recipe = Recipe.model_validate(
        {
            "name": "t",
            "generate": {"templates": [{"id": "t", "prompt": "p", "response": "r"}]},
            "train": {
                "scheduler": "linear",
                "gradient_accumulation": 4,
                "warmup_ratio": 0.1,
                "neftune_alpha": 5,
                "epochs": 2,
            },
        }
    )
    schedule = resolve_schedule(recipe.train, n_train=50 * 8 * 4, n_val=10)
    args = training_arguments(recipe, str(tmp_path), schedule)
    assert args.lr_scheduler_type == "linear" and args.gradient_accumulation_steps == 4
    assert args.warmup_steps == 10 and args.neftune_noise_alpha == 5
    assert args.max_grad_norm == 1.0 and not args.bf16 and not args.gradient_checkpointing


def _minilm_config():
    from transformers import AutoConfig

    from synthtune.model_names import resolve_name

    return AutoConfig.from_pretrained(resolve_name("all-MiniLM-L6-v2"))


def test_methods_that_cannot_run_are_known_before_training() -> None:
    """Prefix tuning needs past_key_values: refused for every classifier (BERT and, in
    transformers 5, decoders too), allowed for a causal LM; prompt/ptuning run on both."""
    from synthtune.config import LocalTinyConfig
    from synthtune.models import tiny_llama_config
    from synthtune.train.methods import unsupported_methods

    bert = unsupported_methods(_minilm_config(), TrainConfig(task="classification"))
    assert set(bert) == {"prefix", "ia3"}  # ia3 has no module mapping for BERT
    assert "BertForSequenceClassification (bert)" in bert["prefix"]
    llama = tiny_llama_config(300, LocalTinyConfig(hidden_size=32, layers=1, heads=2))
    assert set(unsupported_methods(llama, TrainConfig(task="classification"))) == {"prefix"}
    assert unsupported_methods(llama, TrainConfig(task="causal_lm")) == {}
    wrong = TrainConfig(lora={"target_modules": ["no_such_proj"]})
    assert "not modules of this model" in unsupported_methods(llama, wrong)["lora"]


def test_prefix_on_a_bert_classifier_is_a_clear_error_not_a_forward_crash() -> None:
    from synthtune.errors import StageError
    from synthtune.model_names import resolve_name
    from synthtune.models import load_sequence_classifier

    model, _ = load_sequence_classifier(resolve_name("all-MiniLM-L6-v2"), ["a", "b"])
    cfg = TrainConfig(task="classification", method="prefix")
    with pytest.raises(StageError, match=r"train.method prefix: .*use one of .*full"):
        METHODS.get("prefix").prepare(model, cfg)
    # the alternatives it names do run: one forward/backward with prompt tuning
    import torch

    prompt = METHODS.get("prompt").prepare(model, TrainConfig(task="classification"))
    ids = torch.tensor([[101, 2023, 2003, 102]])
    prompt(input_ids=ids, labels=torch.tensor([1])).loss.backward()
