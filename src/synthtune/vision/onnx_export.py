"""The deployable part of a CLIP classifier -- vision tower, projection and class scores -- to
ONNX, run with ONNX Runtime in fp32 and dynamic int8, checked against PyTorch and timed.

The exported graph maps ``pixel_values`` (N, 3, H, W) to ``logits`` (N, classes) and
``image_embeds`` (N, projection_dim). The text tower is not needed at inference: for the
contrastive objective the class-prompt embeddings are computed once and baked in as a
constant, so the ONNX model is a plain image classifier (TensorRT builds it as is:
docs/multimodal.md).

Exporter: torch 2.13's default ``torch.onnx.export`` is the dynamo exporter, which needs
``onnxscript``; the TorchScript exporter (``dynamo=False``) needs only ``onnx`` and handles
CLIP's vision tower (opset 17, dynamic batch), so that is the one used here.

int8: ``onnxruntime.quantization.quantize_dynamic`` (int8 weights, activations quantized per
batch at run time, MatMul/Gemm only): no calibration data, and on CPU it is what makes the
transformer blocks fast; measured against fp32 in one run (``compare_runtimes``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from synthtune.errors import StageError

OPSET = 17


class VisionScorer(nn.Module):
    """``pixel_values -> (logits, image_embeds)`` of a :class:`ClipClassifier` (no text)."""

    def __init__(self, classifier: Any) -> None:
        super().__init__()
        clip = classifier.clip
        self.vision, self.projection = clip.vision_model, clip.visual_projection
        self.head = classifier.classifier
        if self.head is None:
            with torch.no_grad():
                classes = classifier.class_embeds() * clip.logit_scale.exp()
            self.register_buffer("classes", classes.detach().clone())

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embeds = self.projection(self.vision(pixel_values=pixel_values).pooler_output)
        if self.head is not None:
            return self.head(embeds), embeds
        unit = embeds / embeds.norm(dim=-1, keepdim=True)
        return unit @ self.classes.T, embeds


def plain_classifier(model: Any) -> Any:
    """A ``ClipClassifier`` with any LoRA merged into its weights (peft ``merge_and_unload``),
    in eval mode."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return model.eval()


def export_onnx(scorer: VisionScorer, image_size: int, path: Path) -> Path:
    """Write ``scorer`` as ONNX with a dynamic batch axis (TorchScript exporter, see top)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 3, image_size, image_size)
    with torch.no_grad():
        torch.onnx.export(
            scorer.eval(),
            (example,),
            str(path),
            input_names=["pixel_values"],
            output_names=["logits", "image_embeds"],
            dynamic_axes={
                "pixel_values": {0: "batch"},
                "logits": {0: "batch"},
                "image_embeds": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )
    return path


def quantize_int8(fp32_path: Path, int8_path: Path) -> Path:
    """Dynamic int8 (weights int8, activations per batch) with ONNX Runtime's quantizer,
    after its recommended pre-processing (shape inference, graph optimisation)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = int8_path.with_suffix(".prep.onnx")
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    quantize_dynamic(str(prepared), str(int8_path), weight_type=QuantType.QInt8)
    prepared.unlink()
    return int8_path


def ort_session(path: Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session with as many threads as torch uses (a fair comparison)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_runner(
    session: Any, input_name: str = "pixel_values"
) -> Callable[[np.ndarray], np.ndarray]:
    """Logits of an ONNX session whose input is ``input_name`` (the audio export's is
    ``input_features``)."""

    def run(pixels: np.ndarray) -> np.ndarray:
        logits: np.ndarray = session.run(["logits"], {input_name: pixels})[0]
        return logits

    return run


def torch_runner(scorer: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """Logits of a scorer module (its first output), the way the ONNX export traced it."""

    def run(pixels: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits: np.ndarray = scorer(torch.from_numpy(pixels))[0].numpy()
        return logits

    return run


def images_per_second(run: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, n: int) -> float:
    """Median-batch images/s over ``n`` timed batches after one warm-up."""
    run(batch)
    seconds = []
    for _ in range(n):
        started = time.perf_counter()
        run(batch)
        seconds.append(time.perf_counter() - started)
    return len(batch) / statistics.median(seconds)


def compare_runtimes(
    runners: dict[str, Callable[[np.ndarray], np.ndarray]],
    batch: np.ndarray,
    rounds: int,
    block: int = 5,
) -> dict[str, float]:
    """images/s per runtime, timed in turns so that load from other processes on the machine
    falls on every runtime alike; the median round counts. Each turn is one untimed call
    then ``block`` timed calls in a row: a runtime is timed in its steady state, as it runs
    when deployed alone. Timing single calls in turns measured the switch instead: ONNX
    Runtime's worker threads spin for a while after each run (``allow_spinning``), on the
    cores the next runtime needs; PyTorch fp32 at batch 1 timed 152 clips/s after an ORT
    call and 362 in a block (audio encoder, 2 cores), which made int8 look 5.8x faster where
    it is 2.8x."""
    per_round: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():
        run(batch)  # warm-up
    for _ in range(rounds):
        for name, run in runners.items():
            run(batch)  # the switch from the previous runtime lands here, untimed
            started = time.perf_counter()
            for _ in range(block):
                run(batch)
            per_round[name].append(block * len(batch) / (time.perf_counter() - started))
    return {name: round(statistics.median(v), 1) for name, v in per_round.items()}


def require_close(section: str, diff: float, tolerance: float, what: str) -> None:
    """Fail the export when the ONNX fp32 model's logits differ from PyTorch's by more than
    ``tolerance`` (NaN fails too); ``section`` names the recipe section, ``what`` the data."""
    if not diff <= tolerance:
        raise StageError(
            f"{section}: the ONNX model's logits differ from PyTorch's by {diff:.3g} "
            f"(> {section}.tolerance {tolerance:g}) on {what}"
        )


def file_facts(paths: dict[str, Path], tolerance: float) -> dict[str, Any]:
    """What an export report says of its files: the exporter, the tolerance checked, each
    runtime's file and its size."""
    return {
        "exporter": f"torch.onnx.export (TorchScript, dynamo=False), opset {OPSET}",
        "tolerance": tolerance,
        "paths": {name: str(p) for name, p in paths.items()},
        "size_bytes": {name: p.stat().st_size for name, p in paths.items()},
    }


def agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Max abs logit difference and the share of images with the same predicted class."""
    return {
        "max_abs_diff": float(np.abs(reference - other).max()),
        "argmax_agreement": float((reference.argmax(-1) == other.argmax(-1)).mean()),
    }
