"""The audio export: the scorer (audio encoder + head, or baked class prompts) equals the
classifier, its ONNX fp32 model equals PyTorch, the dynamic int8 model agrees on the class of
nearly every clip, and the speed report's ratios and real-time factors are what its clips/s
say. (The export stage itself runs in tests/audio/test_task.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from synthtune.audio import export
from synthtune.audio.features import LogMelConfig, log_mel
from synthtune.audio.model import build_classifier, build_tiny_audio
from synthtune.vision.onnx_export import quantize_int8
from tests.audio.test_task import CLASSES, MINILM, PROMPTS, SR, synth_wave


def _maps(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    maps = [log_mel(synth_wave(CLASSES[i], rng), SR, LogMelConfig()) for i in labels]
    return np.stack(maps), labels


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[export.AudioScorer, Path]:
    """A head classifier trained for 40 plain steps (so its logits mean something), its
    scorer exported to ONNX fp32 and int8 in the returned folder."""
    folder = tmp_path_factory.mktemp("audio-export")
    build_tiny_audio(folder / "encoder", seed=0)
    torch.manual_seed(0)
    model, _, features = build_classifier(
        folder / "encoder", MINILM, list(CLASSES), PROMPTS, "head"
    )
    maps, labels = _maps(48, seed=1)
    optimizer = torch.optim.AdamW(
        [p for n, p in model.named_parameters() if not n.startswith("text_encoder")], lr=1e-3
    )
    model.train()
    for step in range(40):
        batch = np.arange(step * 12, step * 12 + 12) % len(maps)
        out = model(
            input_features=torch.from_numpy(maps[batch]), labels=torch.tensor(labels[batch])
        )
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    scorer = export.AudioScorer(model.eval()).eval()
    fp32 = export.export_onnx(scorer, features, folder / "model.onnx")
    quantize_int8(fp32, folder / "model-int8.onnx")
    return scorer, folder


@pytest.mark.parametrize("objective", ["contrastive", "head"])
def test_the_scorer_is_the_classifier_without_its_text_encoder(
    tmp_path: Path, objective: str
) -> None:
    build_tiny_audio(tmp_path, seed=0)
    torch.manual_seed(0)
    model, _, _ = build_classifier(tmp_path, MINILM, list(CLASSES), PROMPTS, objective)
    scorer = export.AudioScorer(model.eval())
    assert not any("text_encoder" in name for name, _ in scorer.named_parameters())
    maps = torch.from_numpy(_maps(4, seed=2)[0])
    with torch.no_grad():
        torch.testing.assert_close(scorer(maps)[0], model(input_features=maps).logits)


def test_onnx_fp32_equals_pytorch_and_int8_agrees_on_the_class(
    trained: tuple[export.AudioScorer, Path],
) -> None:
    scorer, folder = trained
    maps, labels = _maps(30, seed=3)  # other clips than the training ones
    run = export.runners(
        scorer, {"ort_fp32": folder / "model.onnx", "ort_int8": folder / "model-int8.onnx"}
    )
    report = export.check_outputs(run, maps, labels)
    assert report["agreement"]["ort_fp32"]["max_abs_diff"] < 1e-4
    assert report["agreement"]["ort_fp32"]["argmax_agreement"] == 1.0
    assert report["agreement"]["ort_int8"]["argmax_agreement"] >= 0.9
    assert report["quality"]["torch_fp32"]["macro_f1"] >= 0.9  # the 40 steps learned
    assert report["quality"]["ort_int8"]["macro_f1"] >= 0.85
    assert (folder / "model-int8.onnx").stat().st_size < (folder / "model.onnx").stat().st_size


def test_speed_report_ratios_and_real_time_factors_follow_from_clips_per_second(
    trained: tuple[export.AudioScorer, Path],
) -> None:
    scorer, folder = trained
    run = export.runners(scorer, {"ort_fp32": folder / "model.onnx"})
    features = LogMelConfig()
    found = export.speed_reports(run, _maps(3, seed=4)[0], features, [1, 4], rounds=2)
    assert found["clip_seconds"] == round(features.seconds, 4) and found["threads"] >= 1
    assert set(found["speed"]) == {"batch_1", "batch_4"}
    report = found["speed"]["batch_4"]
    assert report["batch_size"] == 4  # three clips tiled up to the batch
    speed = report["clips_per_second"]
    ratio = report["speedup_vs_torch_fp32"]["ort_fp32"]
    assert ratio == pytest.approx(speed["ort_fp32"] / speed["torch_fp32"], abs=0.01)
    for name, value in speed.items():
        model_only = report["real_time_factor"][name]
        assert model_only == pytest.approx(1 / (value * features.seconds), rel=1e-2)
        assert report["real_time_factor_with_front_end"][name] > model_only
    assert "speedup_vs_ort_fp32" not in report  # no int8 model timed
