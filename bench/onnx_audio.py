"""ONNX Runtime int8 vs fp32 vs PyTorch fp32 for the audio encoder on CPU (issue 24).

Goal: ORT int8 >= 2x PyTorch fp32 clips/s at the same batch and thread count. Batch 1 is
streaming (a device classifying one window at a time, where per-call overhead counts),
batch 16 throughput; both are timed in one run. The model is
``local-tiny-audio`` (a ViT over 64x64 log-mel maps, 8x8 patches, 4 blocks of 128) or, with
``--width``/``--layers``, a wider one of the same layout, randomly initialised and seeded,
exported the way the export stage does it (``synthtune.audio.export``: audio encoder + head,
TorchScript exporter, dynamic int8). Inputs are procedural machine sounds
(``synthtune.audio.machine``) through the log-mel front end. The runtimes are timed in turns
(round-robin), so load from other processes falls on all of them alike; the median round
counts. Printed side by side: clips/s, the ratio to PyTorch fp32 and to ORT fp32, and the
real-time factor (compute seconds per second of audio) without and with the front end.

    python bench/onnx_audio.py [--batch 1 16] [--rounds 50] [--width 128] [--layers 4]
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from synthtune.audio import export
from synthtune.audio.features import LogMelConfig, log_mel
from synthtune.audio.machine import ANOMALIES, MACHINES, MachineSpec, render_machine
from synthtune.audio.model import TinyAudioShape, build_classifier, build_tiny_audio
from synthtune.model_names import resolve_name
from synthtune.vision import onnx_export as onnx


def build(folder: Path, args: argparse.Namespace) -> export.AudioScorer:
    """A seeded audio encoder of the asked width and depth with a linear head, as the export
    stage's scorer."""
    shape = replace(
        TinyAudioShape(), hidden_size=args.width, layers=args.layers, heads=args.width // 32
    )
    build_tiny_audio(folder, seed=0, shape=shape)
    labels = list(ANOMALIES)
    prompts = [[f"the sound of {label}"] for label in labels]
    torch.manual_seed(0)
    classifier, _, _ = build_classifier(
        folder, resolve_name("all-MiniLM-L6-v2"), labels, prompts, "head"
    )
    return export.AudioScorer(classifier.eval()).eval()


def maps(n: int, features: LogMelConfig) -> np.ndarray:
    """Log-mel maps of ``n`` procedural machine sounds, as a (n, 1, mels, frames) batch."""
    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        spec = MachineSpec(MACHINES[i % len(MACHINES)], ANOMALIES[i % len(ANOMALIES)], 0.7)
        wave, _ = render_machine(spec, features.sample_rate, features.seconds, rng)
        out.append(log_mel(wave, features.sample_rate, features))
    return np.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--width", type=int, default=TinyAudioShape().hidden_size)
    parser.add_argument("--layers", type=int, default=TinyAudioShape().layers)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    scorer = build(folder / "audio", args)
    features = LogMelConfig.load(folder / "audio")
    fp32 = export.export_onnx(scorer, features, folder / "audio.onnx")
    int8 = onnx.quantize_int8(fp32, folder / "audio-int8.onnx")
    clips = maps(max(args.batch), features)
    run = export.runners(scorer, {"ort_fp32": fp32, "ort_int8": int8})
    params = sum(p.numel() for p in scorer.audio.parameters()) / 1e6
    print(
        f"audio encoder {params:.2f}M params (width {args.width}, {args.layers} blocks), "
        f"{features.n_mels}x{features.frames} log-mel = {features.seconds:.2f} s of audio, "
        f"{torch.get_num_threads()} threads, {args.rounds} rounds; ONNX "
        f"{fp32.stat().st_size / 1e6:.1f} MB fp32, {int8.stat().st_size / 1e6:.1f} MB int8"
    )
    for name, agreed in export.check_outputs(run, clips, np.zeros(0))["agreement"].items():
        print(f"  {name} vs torch_fp32: {agreed}")
    reports = export.speed_reports(run, clips, features, args.batch, args.rounds)["speed"]
    for report in reports.values():
        speed = report["clips_per_second"]
        front = report["front_end_clips_per_second"]
        print(f"batch {report['batch_size']} (log-mel front end {front} clips/s)")
        for name, value in speed.items():
            print(
                f"  {name:>10}: {value:8.1f} clips/s  {value / speed['torch_fp32']:5.2f}x torch "
                f"fp32  {value / speed['ort_fp32']:5.2f}x ort fp32  RTF "
                f"{report['real_time_factor'][name]:.3g} (with front end "
                f"{report['real_time_factor_with_front_end'][name]:.3g})"
            )


if __name__ == "__main__":
    main()
