"""Real clips from a table (mix.real.audio_field): read with their rate and length, kept
where the recipe points, compared with the synthetic ones in the logmel feature space, and
a missing clip names its row and exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from typer.testing import CliRunner

from synthtune.audio.embed import band_statistics
from synthtune.audio.machine import MachineSpec, render_machine
from synthtune.audio.wav import wav_bytes
from synthtune.cli import app
from synthtune.config import load_recipe
from synthtune.pipeline import run_recipe
from synthtune.records import AudioMedia
from synthtune.store import RunStore

SR = 16_000


def _write_real(folder: Path, anomalies: list[str], seed: int, n: int = 24) -> Path:
    """A JSONL table of ``n`` clips (a real recording folder stand-in) and its WAVs."""
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        anomaly = anomalies[i % len(anomalies)]
        spec = MachineSpec("pump", anomaly, 0.7)
        wave, _ = render_machine(spec, SR, 1.0, np.random.default_rng(seed + i))
        name = f"clips/{anomaly}-{i}.wav"
        (folder / name).write_bytes(wav_bytes(wave, SR))
        rows.append({"wav": name, "text": f"pump recording {i}", "label": anomaly})
    path = folder / "real.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _recipe(folder: Path, real: Path) -> Path:
    recipe = {
        "name": "real-sounds",
        "seed": 3,
        "generate": {
            "n": 24,
            "backend": {"type": "machine-sound"},
            "templates": [
                {
                    "id": "clip",
                    "prompt": "the sound of a pump with {{ anomaly }}",
                    "label": "{{ anomaly }}",
                    "slots": {
                        "machine": {"choice": ["pump"]},
                        "anomaly": {"choice": ["normal", "cavitation"]},
                    },
                }
            ],
        },
        "quality": {"perplexity": {"enabled": False}},
        "mix": {
            "real": {
                "path": str(real),
                "audio_field": "wav",
                "text_field": "text",
                "label_field": "label",
            },
            "features": {"space": "logmel"},
            "ratio": "1:1",
        },
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def test_real_clips_mix_with_generated_ones_in_the_logmel_space(tmp_path: Path) -> None:
    real = _write_real(tmp_path / "data", ["normal", "cavitation"], seed=100)
    run = run_recipe(
        load_recipe(_recipe(tmp_path, real)), tmp_path / "runs", until="mix", quiet=True
    )
    store = RunStore(run.run_dir)
    train = store.read_table("mix", "train")
    reals = [r for r in train if r.source == "real"]
    assert reals and any(r.source == "synthetic" for r in train)
    for record in reals:
        (media,) = record.payload.media or ()
        assert isinstance(media, AudioMedia) and Path(media.path).is_absolute()
        assert media.sample_rate == SR and media.seconds == 1.0
        assert record.payload.messages[0].role == "user"  # the description, as generated
    mix = run.outcomes[-1].summary
    # the distance is measured on the clips' band statistics
    assert mix["rounds"] and all(r["wasserstein"] > 0 and r["mmd"] > 0 for r in mix["rounds"])


def test_the_logmel_space_tells_anomalies_apart() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = {}
        for anomaly in ("normal", "cavitation"):
            real = _write_real(folder / anomaly, [anomaly], seed=7, n=6)
            paths[anomaly] = [
                real.parent / json.loads(line)["wav"] for line in real.read_text().splitlines()
            ]
        normal, cavitation = (band_statistics(paths[a]) for a in ("normal", "cavitation"))
    assert normal.shape == (6, 128)
    within = np.linalg.norm(normal[:3].mean(0) - normal[3:].mean(0))
    between = np.linalg.norm(normal.mean(0) - cavitation.mean(0))
    assert between > 3 * within


def test_a_missing_real_clip_names_its_row_and_exits_2(tmp_path: Path) -> None:
    real = _write_real(tmp_path / "data", ["normal"], seed=1, n=3)
    (tmp_path / "data" / "clips" / "normal-1.wav").unlink()
    result = CliRunner().invoke(
        app, ["mix", str(_recipe(tmp_path, real)), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 2
    squeezed = "".join(result.output.split())  # the console wraps long paths anywhere
    assert "real.jsonl:2:clip'clips/normal-1.wav'(mix.real.audio_field)" in squeezed
