"""examples/machine-sound end to end at a small scale: every stage runs from the recipe, the
held-aside clips are scored, the ONNX models are written and the report shows it all."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from synthtune.config import load_recipe
from synthtune.examples import examples_dir
from synthtune.pipeline import run_recipe
from synthtune.report.html import build_report


def test_the_machine_sound_example_runs_every_stage(tmp_path: Path) -> None:
    recipe = yaml.safe_load((examples_dir() / "machine-sound" / "recipe.yaml").read_text())
    recipe["generate"]["n"] = 64  # small: the full example is measured in docs/audio.md
    recipe["train"]["epochs"] = 2
    recipe["evaluate"]["audio_heldout"]["n"] = 24
    recipe["export"]["audio"]["timed_batches"] = 2
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    result = run_recipe(load_recipe(path), tmp_path / "runs", quiet=True)
    assert [o.status for o in result.outcomes] == ["ran"] * 6
    suite = json.loads((result.run_dir / "evaluate" / "metrics.json").read_text())["suites"]
    audio = suite["audio"]
    assert audio["heldout"]["n"] == 24 and audio["heldout"]["seed"] == 1234
    assert set(audio["tuned"]["per_class"]) <= {
        "normal",
        "imbalance",
        "bearing-fault",
        "cavitation",
    }
    exported = json.loads((result.run_dir / "export" / "audio.json").read_text())
    assert exported["agreement"]["ort_fp32"]["max_abs_diff"] < 1e-3
    assert set(exported["speed"]) == {"batch_1", "batch_16"}
    assert (result.run_dir / "export" / "audio" / "model-int8.onnx").exists()
    html = build_report(result.run_dir).read_text(encoding="utf-8")
    for part in (
        "spectrogram of one clip per class",
        "Evaluation: audio, untuned base vs fine-tuned",
        "held-aside (seed 1234)",
        "audio confusion matrices, held-aside clips",
        "Export: the audio encoder on ONNX Runtime",
    ):
        assert part in html, part
