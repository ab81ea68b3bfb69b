"""Export stage, ``train.task: clip``: the tuned CLIP classifier as one HF folder and its
vision tower as ONNX (fp32 and dynamic int8), proven equal to PyTorch and timed on CPU.

Writes ``export/vision/model`` (merged CLIP folder + processor + ``clip_task.json``),
``export/vision/model.onnx``, ``export/vision/model-int8.onnx`` and ``export/vision.json``:
the exporter, max |logit| difference and argmax agreement of each ONNX model against
PyTorch on the test images, images/s of PyTorch fp32, ORT fp32 and ORT int8 at the same batch
and thread count, accuracy/macro-F1 of each on the test images, and file sizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from synthtune.context import StageContext
from synthtune.records import Record
from synthtune.vision import onnx_export as onnx
from synthtune.vision.clip_task import load_image, load_tuned_classifier


def test_images(inputs_processor: Any, root: Path, records: list[Record], labels: list[str]) -> Any:
    """``(pixels, truth)`` of the test records with an image and a known label."""
    from synthtune.vision.clip_task import ClipInputs

    ids = {label: i for i, label in enumerate(labels)}
    usable = [r for r in records if r.payload.media and r.payload.label in ids]
    encoder = ClipInputs(inputs_processor, root, {})
    pixels = encoder.pixels([load_image(r, root) for r in usable]) if usable else None
    return pixels, np.array([ids[str(r.payload.label)] for r in usable])


def _quality(logits: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import f1_score

    predicted = logits.argmax(-1)
    return {
        "accuracy": round(float((predicted == truth).mean()), 4),
        "macro_f1": round(float(f1_score(truth, predicted, average="macro")), 4),
    }


def check_and_time(
    scorer: onnx.VisionScorer,
    paths: dict[str, Path],
    pixels: np.ndarray,
    truth: np.ndarray,
    cfg: Any,
) -> dict[str, Any]:
    """Every runtime on the same images: agreement with PyTorch, quality, images/s."""
    import torch

    runners = {"torch_fp32": onnx.torch_runner(scorer)}
    runners.update({name: onnx.ort_runner(onnx.ort_session(p)) for name, p in paths.items()})
    logits = {name: run(pixels) for name, run in runners.items()}
    reference = logits["torch_fp32"]
    report: dict[str, Any] = {
        "agreement": {
            n: onnx.agreement(reference, v) for n, v in logits.items() if n != "torch_fp32"
        },
        "quality": {n: _quality(v, truth) for n, v in logits.items()} if len(truth) else {},
    }
    reps = -(-cfg.batch_size // len(pixels))  # tile the test images up to one full batch
    batch = np.concatenate([pixels] * reps)[: cfg.batch_size]
    speed = onnx.compare_runtimes(runners, batch, cfg.timed_batches)
    report["images_per_second"] = speed
    report["speedup_vs_torch_fp32"] = {
        n: round(v / speed["torch_fp32"], 2) for n, v in speed.items() if n != "torch_fp32"
    }
    report.update(batch_size=len(batch), threads=torch.get_num_threads())
    return report


def export_clip(ctx: StageContext, test: list[Record]) -> dict[str, Any]:
    """The export stage's model step for ``train.task: clip`` (see the module docstring)."""
    cfg, store = ctx.recipe.export.vision, ctx.store
    if not cfg.onnx:
        return {"model": {"skipped": "export.vision.onnx is false"}}
    base = ctx.resolve_model(ctx.recipe.train.base)
    model, processor = load_tuned_classifier(store.path("train", "adapter"), base)
    classifier = onnx.plain_classifier(model)
    out = store.stage_dir("export") / "vision"
    classifier.save_pretrained(out / "model")
    processor.save_pretrained(out / "model")
    scorer = onnx.VisionScorer(classifier).eval()
    size = classifier.clip.config.vision_config.image_size
    paths = {"ort_fp32": onnx.export_onnx(scorer, size, out / "model.onnx")}
    if cfg.int8:
        paths["ort_int8"] = onnx.quantize_int8(paths["ort_fp32"], out / "model-int8.onnx")
    pixels, truth = test_images(processor, store.root, test, classifier.labels)
    if pixels is None:
        pixels = np.random.default_rng(0).normal(size=(cfg.batch_size, 3, size, size))
        pixels = pixels.astype(np.float32)
    report = check_and_time(scorer, paths, pixels, truth, cfg)
    diff = report["agreement"]["ort_fp32"]["max_abs_diff"]
    onnx.require_close("export.vision", diff, cfg.tolerance, f"{len(pixels)} images")
    report.update(images=len(pixels), **onnx.file_facts(paths, cfg.tolerance))
    store.write_json("export", "vision.json", report)
    ctx.log(f"export: ONNX max |diff| {diff:.2e}, images/s {report['images_per_second']}")
    return {"model": {"onnx": str(paths["ort_fp32"]), **report["speedup_vs_torch_fp32"]}}
