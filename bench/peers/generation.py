"""Generation against the peers' loopback LLM server, side by side with distilabel.

The shared harness (``../shared/peers``, or ``$SYNTHTUNE_PEERS_DIR``) holds the fault server
and the distilabel driver. This bench starts the server the way ``distilabel_gen.sh
throughput`` does (0.2 s latency, no faults, seed 7), runs ``synthtune generate`` on 200
requests of the same prompt template (age 18-80, gender, one of 18 symptoms, a number) as a
fresh process -- at default settings, then tuned -- and, when the harness's distilabel
virtualenv exists (``distilabel_gen.sh`` builds it), runs distilabel on the same server in
turn. It prints one JSON line per run and the ratios. Run it on a quiet machine.

Measured here (2 cores, quiet, 3 runs in turns, 200 requests, 0.2 s latency; median process
wall time), 2026-12-04: distilabel 10.07 s (8.63-10.46 s, 29-35 gen/s on its run); synthtune
at defaults 4.22 s = 2.39x (3.63-4.43 s, 75-83 gen/s on the run), tuned (flush_every 200)
4.24 s = 2.38x. Before: 13-14 s before the lazy imports, 7.97 s and 31 gen/s before the
adaptive limit, 4.39 s (1.93x) with two batches in flight, now five at the defaults.
The ratio moves by about +-0.3x between sittings.

    python bench/peers/generation.py [--repeats 3] [--n 200]
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
SYMPTOMS = [
    "头痛",
    "发热",
    "咳嗽",
    "咽喉痛",
    "腹痛",
    "腹泻",
    "胸闷",
    "心悸",
    "失眠",
    "腰痛",
    "关节疼痛",
    "皮疹",
    "头晕",
    "乏力",
    "便秘",
    "尿频",
    "耳鸣",
    "牙痛",
]


def _server(folder: Path, latency: float) -> tuple[subprocess.Popen[bytes], int]:
    port_file = folder / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(PEERS / "fault_llm_server.py"),
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--seed",
            "7",
            "--fault-rate",
            "0",
            "--latency",
            str(latency),
            "--retry-after",
            "1",
            "--log",
            str(folder / "server.jsonl"),
            "--max-seconds",
            "900",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not (port_file.exists() and port_file.read_text().strip()):
        if time.monotonic() > deadline:
            raise RuntimeError("the fault server did not start")
        time.sleep(0.05)
    return proc, int(port_file.read_text())


def _recipe(folder: Path, port: int, n: int, tuned: bool) -> Path:
    backend: dict[str, Any] = {
        "type": "openai",
        "base_url": f"http://127.0.0.1:{port}/v1",
        "model": "fake",
        "api_key_env": "PEER_KEY",
        "max_tokens": 64,
    }
    generate: dict[str, Any] = {
        "n": n,
        "backend": backend,
        "templates": [
            {
                "id": "triage",
                "prompt": "请以医生的口吻回答：一位{{ age }}岁的{{ gender }}性患者出现{{ symptom }}"
                "，应该注意什么？（编号{{ i }}）",
                "slots": {
                    "age": {"randint": [18, 80]},
                    "gender": {"choice": ["男", "女"]},
                    "symptom": {"choice": SYMPTOMS},
                    "i": {"randint": [0, 10**6]},
                },
            }
        ],
    }
    if tuned:
        backend["concurrency"] = 64
        generate["flush_every"] = n
    path = folder / ("tuned.yaml" if tuned else "defaults.yaml")
    path.write_text(json.dumps({"name": path.stem, "seed": 7, "generate": generate}), "utf-8")
    return path


def synthtune_run(folder: Path, port: int, n: int, tuned: bool) -> dict[str, Any]:
    recipe = _recipe(folder, port, n, tuned)
    runs = folder / f"runs-{time.perf_counter_ns()}"
    env = {**os.environ, "PEER_KEY": "peer-test-key"}
    started = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "synthtune",
            "generate",
            str(recipe),
            "--out",
            str(runs),
            "-q",
            "--no-cache",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
    state = json.loads((runs / recipe.stem / "state.json").read_text())
    summary = state["stages"]["generate"]["summary"]
    run_seconds = state["stages"]["generate"].get("seconds")
    return {
        "tool": "synthtune",
        "settings": "tuned (concurrency 64, flush_every n)" if tuned else "defaults",
        "wall_s": round(wall, 2),
        "run_s": run_seconds,
        "gen_per_s_run": round(n / run_seconds, 1) if run_seconds else None,
        "records": summary["records"],
        "retried": summary["usage"]["retried"],
        "retry_reasons": summary["usage"].get("retry_reasons", {}),
    }


def distilabel_run(folder: Path, port: int, n: int) -> dict[str, Any] | None:
    python = PEERS_HOME / "venv-distilabel" / "bin" / "python"
    if not python.exists() or subprocess.run([str(python), "-c", "import distilabel"]).returncode:
        return None  # the harness's distilabel_gen.sh builds this virtualenv
    env = {
        **os.environ,
        "DISTILABEL_CACHE_DIR": str(folder / "distilabel-cache"),
        "TOKENIZERS_PARALLELISM": "false",
        "DISTILABEL_LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "OPENAI_API_KEY": "peer-test-key",
    }
    started = time.perf_counter()
    proc = subprocess.run(
        [
            str(python),
            str(PEERS / "distilabel_gen.py"),
            "--base-url",
            f"http://127.0.0.1:{port}/v1",
            "--n",
            str(n),
            "--input-batch-size",
            str(n),
            "--server-log",
            str(folder / "server.jsonl"),
            "--cache-dir",
            str(folder / f"dl-{time.perf_counter_ns()}"),
            "--label",
            "throughput",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - started
    lines = [x.removeprefix("SUMMARY ") for x in proc.stdout.splitlines()]
    line = next((x for x in reversed(lines) if x.startswith("{")), None)
    found = json.loads(line) if line else {"error": proc.stderr[-500:]}
    return {
        "tool": "distilabel",
        "settings": f"input_batch_size {n}",
        "wall_s": round(wall, 2),
        **{
            k: found.get(k) for k in ("gen_per_s", "valid", "pipeline_run_s", "error") if k in found
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.2)
    args = parser.parse_args()
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server, port = _server(folder, args.latency)
        try:
            for _ in range(args.repeats):  # in turns: drift hits every tool alike
                for key, run in (
                    ("synthtune defaults", lambda: synthtune_run(folder, port, args.n, False)),
                    ("synthtune tuned", lambda: synthtune_run(folder, port, args.n, True)),
                    ("distilabel", lambda: distilabel_run(folder, port, args.n)),
                ):
                    out = run()
                    if out is not None:
                        print(json.dumps(out, ensure_ascii=False), flush=True)
                        results.setdefault(key, []).append(out)
        finally:
            server.terminate()
            server.wait()
    walls = {k: statistics.median(r["wall_s"] for r in v) for k, v in results.items()}
    print(json.dumps({"median_wall_s": walls}))
    if "distilabel" in walls:
        for key in ("synthtune defaults", "synthtune tuned"):
            print(f"{key}: {walls['distilabel'] / walls[key]:.2f}x distilabel's wall-time speed")


if __name__ == "__main__":
    main()
