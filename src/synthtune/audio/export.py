"""Export stage, ``train.task: audio``: the tuned audio classifier as one folder and its audio
encoder as ONNX (fp32 and dynamic int8), proven equal to PyTorch and timed on CPU.

Writes ``export/audio/model`` (merged model: audio encoder HF folder, ``text/``, heads,
tokenizer, ``audio_features.json``, ``audio_task.json``), ``export/audio/model.onnx``,
``export/audio/model-int8.onnx`` and ``export/audio.json``: max |logit| difference and argmax
agreement of each ONNX model against PyTorch on the test clips, accuracy/macro-F1 of each,
and per batch size (``export.audio.batch_sizes``: 1 for streaming, 16 for throughput) the
clips/s of PyTorch fp32, ORT fp32 and ORT int8 at the same thread count, their ratios, and
the real-time factor of each (compute seconds per second of audio, with and without the
log-mel front end); file sizes.

The ONNX graph maps ``input_features`` (N, 1, n_mels, frames), the standardised log-mel maps
of ``synthtune.audio.features``, to ``logits`` (N, classes) and ``audio_embeds``; as for
CLIP, the contrastive objective's class-prompt embeddings are baked in, so no text encoder is
needed at inference. Quantisation, sessions and timing are the vision export's
(``synthtune.vision.onnx_export``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from synthtune.audio.features import LogMelConfig, log_mel_batch
from synthtune.context import StageContext
from synthtune.records import Record
from synthtune.vision import onnx_export as onnx

INPUT, OUTPUTS = "input_features", ["logits", "audio_embeds"]


class AudioScorer(nn.Module):
    """``input_features -> (logits, audio_embeds)`` of an ``AudioTextClassifier`` (no text
    encoder: the class-prompt embeddings, times the temperature, are a constant)."""

    def __init__(self, classifier: Any) -> None:
        super().__init__()
        self.audio = classifier.audio_encoder
        self.head = classifier.classifier
        if self.head is None:
            with torch.no_grad():
                classes = classifier.class_embeds() * classifier.joint.scale()
            self.register_buffer("classes", classes.detach().clone())

    def forward(self, input_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embeds = self.audio(pixel_values=input_features).image_embeds
        if self.head is not None:
            return self.head(embeds), embeds
        unit = embeds / embeds.norm(dim=-1, keepdim=True)
        return unit @ self.classes.T, embeds


def export_onnx(scorer: AudioScorer, features: LogMelConfig, path: Path) -> Path:
    """Write ``scorer`` as ONNX with a dynamic batch axis (the vision export's exporter:
    TorchScript, ``dynamo=False``, opset ``onnx.OPSET``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 1, features.n_mels, features.frames)
    with torch.no_grad():
        torch.onnx.export(
            scorer.eval(),
            (example,),
            str(path),
            input_names=[INPUT],
            output_names=OUTPUTS,
            dynamic_axes={name: {0: "batch"} for name in [INPUT, *OUTPUTS]},
            opset_version=onnx.OPSET,
            dynamo=False,
        )
    return path


def runners(scorer: AudioScorer, paths: dict[str, Path]) -> dict[str, Callable[..., np.ndarray]]:
    """PyTorch fp32 and one ONNX Runtime session per exported file, same thread count."""
    out = {"torch_fp32": onnx.torch_runner(scorer)}
    out.update({name: onnx.ort_runner(onnx.ort_session(p), INPUT) for name, p in paths.items()})
    return out


def front_end_clips_per_second(features: LogMelConfig, batch_size: int, rounds: int) -> float:
    """Log-mel maps per second (``log_mel_batch`` on CPU); the time does not depend on what
    the waveforms hold, so they are seeded noise."""
    rng = np.random.default_rng(0)
    waves = torch.from_numpy(0.1 * rng.standard_normal((batch_size, features.samples)))
    waves = waves.float()
    log_mel_batch(waves, features)  # warm-up
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        log_mel_batch(waves, features)
        seconds.append(time.perf_counter() - started)
    return batch_size / float(np.median(seconds))


def speed_report(
    run: dict[str, Callable[[np.ndarray], np.ndarray]],
    maps: np.ndarray,
    features: LogMelConfig,
    batch_size: int,
    rounds: int,
) -> dict[str, Any]:
    """At one batch size: clips/s per runtime (timed in turns, ``onnx.compare_runtimes``),
    the ratios to PyTorch fp32 and to ORT fp32, and real-time factors: model only, and with
    the log-mel front end (seconds of compute per second of audio; below 1 is faster than
    real time)."""
    reps = -(-batch_size // len(maps))  # tile the clips up to one full batch
    batch = np.concatenate([maps] * reps)[:batch_size]
    speed = onnx.compare_runtimes(run, batch, rounds)
    front = front_end_clips_per_second(features, batch_size, rounds)

    def ratios(reference: str) -> dict[str, float]:
        return {n: round(v / speed[reference], 2) for n, v in speed.items() if n != reference}

    return {
        "batch_size": len(batch),
        "clips_per_second": speed,
        "speedup_vs_torch_fp32": ratios("torch_fp32"),
        **({"speedup_vs_ort_fp32": ratios("ort_fp32")} if "ort_int8" in speed else {}),
        "real_time_factor": {
            n: float(f"{1 / (v * features.seconds):.3g}") for n, v in speed.items()
        },
        "real_time_factor_with_front_end": {
            n: float(f"{(1 / v + 1 / front) / features.seconds:.3g}") for n, v in speed.items()
        },
        "front_end_clips_per_second": round(front, 1),
    }


def speed_reports(
    run: dict[str, Callable[[np.ndarray], np.ndarray]],
    maps: np.ndarray,
    features: LogMelConfig,
    batch_sizes: list[int],
    rounds: int,
) -> dict[str, Any]:
    """:func:`speed_report` per batch size, keyed ``batch_<size>``, with the clip length and
    thread count they share."""
    return {
        "speed": {
            f"batch_{size}": speed_report(run, maps, features, size, rounds) for size in batch_sizes
        },
        "clip_seconds": round(features.seconds, 4),
        "threads": torch.get_num_threads(),
    }


def _quality(logits: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import f1_score

    predicted = logits.argmax(-1)
    return {
        "accuracy": round(float((predicted == truth).mean()), 4),
        "macro_f1": round(float(f1_score(truth, predicted, average="macro", zero_division=0)), 4),
    }


def check_outputs(
    run: dict[str, Callable[[np.ndarray], np.ndarray]], maps: np.ndarray, truth: np.ndarray
) -> dict[str, Any]:
    """Every runtime on the same clips: agreement with PyTorch fp32, and quality."""
    logits = {name: fn(maps) for name, fn in run.items()}
    reference = logits["torch_fp32"]
    return {
        "agreement": {
            n: onnx.agreement(reference, v) for n, v in logits.items() if n != "torch_fp32"
        },
        "quality": {n: _quality(v, truth) for n, v in logits.items()} if len(truth) else {},
    }


def labelled_maps(inputs: Any, records: list[Record], labels: list[str]) -> tuple[Any, np.ndarray]:
    """``(maps, truth)`` of the test records with a clip and a known label (maps None when
    there are none)."""
    from synthtune.vision.images_suite import labelled_images

    usable, truth = labelled_images(records, labels)
    maps = np.stack([inputs.clip(r) for r in usable]) if usable else None
    return maps, np.array(truth)


def export_audio(ctx: StageContext, test: list[Record]) -> dict[str, Any]:
    """The export stage's model step for ``train.task: audio`` (see the module docstring)."""
    from synthtune.audio.model import load_tuned_classifier

    cfg, store = ctx.recipe.export.audio, ctx.store
    if not cfg.onnx:
        return {"model": {"skipped": "export.audio.onnx is false"}}
    base = ctx.resolve_model(ctx.recipe.train.base)
    model, inputs = load_tuned_classifier(store.path("train", "adapter"), base, store.root)
    classifier = onnx.plain_classifier(model)
    out = store.stage_dir("export") / "audio"
    classifier.save_pretrained(out / "model")
    inputs.save_pretrained(out / "model")
    scorer = AudioScorer(classifier).eval()
    paths = {"ort_fp32": export_onnx(scorer, inputs.features, out / "model.onnx")}
    if cfg.int8:
        paths["ort_int8"] = onnx.quantize_int8(paths["ort_fp32"], out / "model-int8.onnx")
    maps, truth = labelled_maps(inputs, test, classifier.labels)
    if maps is None:
        shape = (max(cfg.batch_sizes), 1, inputs.features.n_mels, inputs.features.frames)
        maps = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    run = runners(scorer, paths)
    report = check_outputs(run, maps, truth)
    diff = report["agreement"]["ort_fp32"]["max_abs_diff"]
    onnx.require_close("export.audio", diff, cfg.tolerance, f"{len(maps)} clips")
    report.update(speed_reports(run, maps, inputs.features, cfg.batch_sizes, cfg.timed_batches))
    report.update(clips=len(maps), **onnx.file_facts(paths, cfg.tolerance))
    store.write_json("export", "audio.json", report)
    speedups = {size: r["speedup_vs_torch_fp32"] for size, r in report["speed"].items()}
    ctx.log(f"export: ONNX max |diff| {diff:.2e}, speed-up vs PyTorch fp32 {speedups}")
    return {"model": {"onnx": str(paths["ort_fp32"]), "speedup_vs_torch_fp32": speedups}}
