"""The models compared side by side: base, tuned and, when the export stage quantized the
merged model (``export/quantize.json``), quantized.

Each variant is a loader, so the stage holds one model in memory at a time. Export runs before
evaluate in the pipeline, so one ``synthtune run`` fills all three columns;
``quantized_status`` says why the quantized one is absent otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthtune.context import StageContext
from synthtune.models import (
    load_causal_lm,
    load_sequence_classifier,
    load_tuned_classifier,
    pick_device,
)

Loaded = tuple[Any, Any]  # (model, tokenizer)


@dataclass(frozen=True)
class ModelVariant:
    name: str
    source: str  # where it comes from, for metrics.json
    load: Callable[[], Loaded]


def load_tuned(base_path: str, tuned_dir: Path) -> Loaded:
    """base + adapter when ``tuned_dir`` holds a peft adapter, else a full model folder."""
    if (tuned_dir / "adapter_config.json").exists():
        from peft import PeftModel

        model, tokenizer = load_causal_lm(base_path, dtype="float32")
        return PeftModel.from_pretrained(model, str(tuned_dir)).eval(), tokenizer
    return load_causal_lm(str(tuned_dir), dtype="float32")


def load_quantized(
    report: dict[str, Any], fp32_dir: Path, load_fp32: Callable[[str], Loaded] | None = None
) -> Loaded:
    """The model ``export/quantize.json`` describes. CPU int8 state dicts are restored the
    way they were saved: the fp32 folder (``load_fp32``, a causal LM by default), the same
    backend, then the saved int8 weights."""
    import torch

    path = Path(report["path"])
    if report["device"] == "cuda":
        return load_causal_lm(str(path), device_map={"": 0})
    from synthtune.int8 import INT8_CPU

    if load_fp32 is None:
        model, tokenizer = load_causal_lm(
            str(fp32_dir), device=torch.device("cpu"), dtype="float32"
        )
    else:
        model, tokenizer = load_fp32(str(fp32_dir))
    model = INT8_CPU.get(report["backend"])(model)
    # weights_only=False: packed int8 params are not plain tensors; the file is this run's own
    state = torch.load(path / "int8_state_dict.pt", map_location="cpu", weights_only=False)
    model.load_state_dict(state)
    return model.eval(), tokenizer


def quantized_status(
    ctx: StageContext, task: str = "causal_lm"
) -> tuple[dict[str, Any] | None, str]:
    """``(report, why)``: the quantize report when its model (of ``task``) can be loaded
    here, else None."""
    import torch

    report_path = ctx.store.path("export", "quantize.json")
    if not report_path.exists():
        return None, "no export/quantize.json (export.quantize unset, or export.merge false)"
    report = ctx.store.read_json("export", "quantize.json")
    if "skipped" in report:
        return None, f"quantization was skipped: {report['skipped']}"
    if report.get("task", "causal_lm") != task:
        return None, f"export/quantize.json holds a {report.get('task', 'causal_lm')} model"
    if report.get("device") == "cuda" and not torch.cuda.is_available():
        return None, f"{report['backend']} needs a CUDA device"
    return report, f"{report['mode']} via {report['backend']} ({report['device']})"


def causal_variants(ctx: StageContext) -> tuple[list[ModelVariant], str]:
    base_path = ctx.resolve_model(ctx.recipe.train.base)
    tuned_dir = ctx.store.path("train", "adapter")

    def tuned() -> Loaded:
        model, tokenizer = load_tuned(base_path, tuned_dir)
        return model.to(pick_device()), tokenizer

    variants = [
        ModelVariant("base", base_path, lambda: load_causal_lm(base_path, dtype="float32")),
        ModelVariant("tuned", str(tuned_dir), tuned),
    ]
    report, why = quantized_status(ctx)
    if report is not None:
        fp32_dir = ctx.store.path("export", "model")
        variants.append(
            ModelVariant("quantized", report["path"], lambda: load_quantized(report, fp32_dir))
        )
    return variants, why


def classification_variants(ctx: StageContext, labels: list[str]) -> tuple[list[ModelVariant], str]:
    """Base: the pre-trained model with a fresh head seeded like training's (chance level)."""
    import torch

    base_path = ctx.resolve_model(ctx.recipe.train.base)
    tuned_dir = ctx.store.path("train", "adapter")
    seed = ctx.recipe.seed

    def base() -> Loaded:
        torch.manual_seed(seed)
        return load_sequence_classifier(base_path, labels)

    variants = [
        ModelVariant("base", base_path, base),
        ModelVariant(
            "tuned", str(tuned_dir), lambda: load_tuned_classifier(base_path, tuned_dir, labels)
        ),
    ]
    report, why = quantized_status(ctx, "classification")
    if report is not None:
        fp32_dir = ctx.store.path("export", "model")
        variants.append(
            ModelVariant(
                "quantized",
                report["path"],
                lambda: load_quantized(
                    report, fp32_dir, lambda p: load_sequence_classifier(p, labels)
                ),
            )
        )
    return variants, why
