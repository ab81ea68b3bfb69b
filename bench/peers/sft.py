"""LoRA SFT on the peers' shared workload, side by side with LLaMA-Factory and TRL.

The shared harness (``../shared/peers``, or ``$SYNTHTUNE_PEERS_DIR``) builds the workload once
(a 16.8M-parameter Llama, random init seed 7, an 8k-vocabulary BPE tokenizer, 2,000 Chinese
medical chat rows) and runs the peers in their own virtualenvs. This bench trains synthtune on
the same bytes with the same settings -- LoRA r16 / alpha 32 / dropout 0.1 on q,k,v, batch 8,
cutoff 256, lr 1e-4 cosine without warmup, fp32 on the CPU, 40 steps, loss on the replies only
-- through the real CLI (``synthtune train`` on a real-data recipe, one fresh process per run),
once per batching mode, and each peer whose virtualenv exists, in turns. It prints one JSON
line per run and then the medians and ratios.

Throughput is real (non-pad) tokens per second of the training loop, measured the way each
tool reports it: LLaMA-Factory and TRL divide the non-padding input tokens by the Trainer's
``train_runtime``; synthtune's figure here is the same tokens over the whole ``trainer.train``
call (``seconds`` in train/metrics.json: steps, data loading, logging), not only the timed
optimizer steps (``train_seconds``), so the comparison never flatters us. MFU counts
``4 * N`` FLOPs per real token (LoRA: forward 2N, input gradients 2N; N = all 16.8M
parameters, as the issue defines it) against this machine's fp32 matmul peak, measured in the
same sitting (``synthtune.train.estimate.matmul_peak_gflops``).

    python bench/peers/sft.py [--repeats 3] [--steps 40] [--modes grouped packed padded]
                              [--no-peers]

Measured here: see docs/performance.md (the numbers move by a few percent between sittings;
only ratios from one sitting are compared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PEERS = Path(os.environ.get("SYNTHTUNE_PEERS_DIR", ROOT.parent / "shared" / "peers"))
PEERS_HOME = Path(os.environ.get("SYNTHTUNE_PEERS_HOME", Path.home() / ".cache/synthtune-peers"))
WORKLOAD = PEERS_HOME / "workload"
PARAMETERS = 16_765_824  # the workload's model (MANIFEST.json "params")

RECIPE = """\
name: peers-sft
seed: 7
mix:
  real:
    train: {data}/med_sft_messages.jsonl
    test: {test}
  val_fraction: 0
train:
  base: {model}
  task: causal_lm
  method: lora
  lora: {{r: 16, alpha: 32, dropout: 0.1, target_modules: [q_proj, k_proj, v_proj]}}
  batch_size: 8
  max_length: 256
  max_steps: {steps}
  lr: {{adapter: 1.0e-4}}
  scheduler: cosine
  warmup_steps: 0
  weight_decay: 0.0
  eval_strategy: "no"
  logging_steps: 5
  batching: {batching}
"""


def ensure_workload() -> None:
    if (WORKLOAD / "MANIFEST.json").is_file():
        return
    builder = PEERS / "build_workload.py"
    if not builder.is_file():
        sys.exit(f"no workload at {WORKLOAD} and no {builder}: set SYNTHTUNE_PEERS_DIR")
    subprocess.run([sys.executable, str(builder), "--out", str(WORKLOAD)], check=True)


def synthtune_run(folder: Path, batching: str, steps: int) -> dict[str, Any]:
    data = WORKLOAD / "data"
    test = folder / "test.jsonl"
    if not test.exists():  # the recipe needs a test split; training never reads it
        lines = (data / "med_sft_messages.jsonl").read_text(encoding="utf-8").splitlines()
        test.write_text("\n".join(lines[:20]) + "\n", encoding="utf-8")
    recipe = folder / f"recipe-{batching}.yaml"
    recipe.write_text(
        RECIPE.format(
            data=data, test=test, model=WORKLOAD / "tiny-llama", steps=steps, batching=batching
        ),
        encoding="utf-8",
    )
    runs = folder / f"runs-{batching}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "synthtune", "train", str(recipe), "--out", str(runs), "-q"],
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        return {"peer": f"synthtune-{batching}", "error": proc.stderr[-2000:]}
    metrics = json.loads((runs / "peers-sft" / "train" / "metrics.json").read_text())
    import shutil

    shutil.rmtree(runs)  # a fresh run next time (no resume, no cached stages)
    return {
        "peer": f"synthtune-{batching}",
        "tokens_per_s": round(metrics["tokens"] / metrics["seconds"], 1),
        "step_tokens_per_s": metrics["tokens_per_second"],
        "train_runtime_s": metrics["seconds"],
        "train_seconds": metrics["train_seconds"],
        "train_loss": metrics["train_loss"],
        "tokens": metrics["tokens"],
        "steps": metrics["global_step"],
        "process_wall_s": round(wall, 2),
    }


def peer_run(script: str, steps: int) -> dict[str, Any] | None:
    path = PEERS / script
    venv = (
        PEERS_HOME / {"llamafactory_sft.sh": "venv-llamafactory", "trl_sft.sh": "venv-trl"}[script]
    )
    if not path.is_file() or not (venv / "bin" / "python").exists():
        return None
    proc = subprocess.run(
        ["bash", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "MAX_STEPS": str(steps)},
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"peer": script, "error": proc.stderr[-2000:]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--modes", nargs="+", default=["grouped", "packed", "padded"])
    parser.add_argument("--no-peers", action="store_true")
    args = parser.parse_args()
    ensure_workload()
    from synthtune.train.estimate import matmul_peak_gflops

    peak = max(matmul_peak_gflops() for _ in range(3))
    print(json.dumps({"matmul_peak_gflops": round(peak, 1)}), flush=True)
    folder = Path(tempfile.mkdtemp(prefix="synthtune-peers-sft-"))
    results: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.repeats):
        turn: list[dict[str, Any] | None] = []
        if not args.no_peers:
            scripts = ("llamafactory_sft.sh", "trl_sft.sh")
            turn += [peer_run(script, args.steps) for script in scripts]
        turn += [synthtune_run(folder, mode, args.steps) for mode in args.modes]
        for result in turn:
            if result is None:
                continue
            print(json.dumps(result), flush=True)
            if "error" not in result:
                results.setdefault(result["peer"], []).append(result)
    summary: dict[str, Any] = {}
    for peer, runs in results.items():
        tps = statistics.median(r["tokens_per_s"] for r in runs)
        summary[peer] = {
            "tokens_per_s": round(tps, 1),
            "mfu": round(4 * PARAMETERS * tps / (peak * 1e9), 3),
            "train_loss": round(statistics.median(r["train_loss"] for r in runs), 4),
            "runs": len(runs),
        }
    reference = summary.get("llamafactory")
    for row in summary.values():
        if reference:
            row["x_llamafactory"] = round(row["tokens_per_s"] / reference["tokens_per_s"], 2)
            row["loss_vs_llamafactory"] = round(row["train_loss"] / reference["train_loss"] - 1, 4)
    print(json.dumps({"summary": summary, "matmul_peak_gflops": round(peak, 1)}, indent=1))


if __name__ == "__main__":
    main()
