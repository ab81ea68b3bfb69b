"""synthtune serve: sustained requests/s with 16 concurrent clients on loopback, p50/p95 latency
and errors, next to one client, measured in one run on a locally built tiny Llama.

Goal (issue 8): sustained throughput with 16 clients, no errors, p95 reported.

    python bench/server.py [--seconds 20] [--clients 16] [--max-tokens 32] [--hidden 256]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path

import httpx

MODEL = "bench"


def build_model(out: Path, hidden: int, layers: int) -> None:
    from synthtune.config import LocalTinyConfig
    from synthtune.models import build_local_tiny, general_corpus

    texts = general_corpus()[:400]
    cfg = LocalTinyConfig(
        vocab_size=2000, hidden_size=hidden, layers=layers, heads=4, pretrain_epochs=0.2
    )
    build_local_tiny(out, texts, texts, cfg, seed=1)


def serve(model_dir: str, max_batch: int, queue: mp.Queue, stop: mp.Event) -> None:  # type: ignore[type-arg]
    """The server in its own process, so clients do not share its GIL."""
    from synthtune.serve import ServeLimits, ServeServer, create_app, load_served_models
    from synthtune.serve.models import ServeSource

    models = load_served_models(ServeSource(model_dir, MODEL, {}), device="cpu")
    app = create_app(
        models, limits=ServeLimits(max_tokens=256, max_concurrent=256, max_batch=max_batch)
    )
    with ServeServer(app) as server:
        queue.put(server.url)
        stop.wait()


async def client_loop(
    client: httpx.AsyncClient, i: int, max_tokens: int, until: float, out: list[tuple[float, int]]
) -> None:
    n = 0
    while time.perf_counter() < until:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": f"Client {i} asks question {n}: what is a"}],
            "max_tokens": max_tokens,
            "temperature": 0.8,
        }
        started = time.perf_counter()
        response = await client.post("/chat/completions", json=body)
        out.append((time.perf_counter() - started, response.status_code))
        n += 1


async def measure(url: str, clients: int, seconds: float, max_tokens: int) -> dict[str, float]:
    samples: list[tuple[float, int]] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(
            *(client_loop(client, i, max_tokens, until, samples) for i in range(clients))
        )
        elapsed = time.perf_counter() - started
    latencies = sorted(s for s, _ in samples)
    return {
        "requests": len(samples),
        "rps": len(samples) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))],
        "errors": sum(1 for _, status in samples if status != 200),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--max-batch", type=int, default=16, help="1 = no batching")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        build_model(Path(tmp), args.hidden, args.layers)
        queue: mp.Queue = mp.Queue()  # type: ignore[type-arg]
        stop = mp.Event()
        server = mp.Process(target=serve, args=(tmp, args.max_batch, queue, stop), daemon=True)
        server.start()
        url = queue.get(timeout=120)
        try:
            one = asyncio.run(measure(url, 1, args.seconds / 2, args.max_tokens))
            many = asyncio.run(measure(url, args.clients, args.seconds, args.max_tokens))
        finally:
            stop.set()
            server.join(timeout=30)
    print(
        f"model: hidden {args.hidden}, {args.layers} layers; {args.max_tokens} new tokens max, "
        f"temperature 0.8; max_batch {args.max_batch}"
    )
    for label, row in (("1 client", one), (f"{args.clients} clients", many)):
        print(
            f"{label:>11}: {row['rps']:.2f} req/s over {row['requests']:.0f} requests, "
            f"p50 {row['p50_ms']:.0f} ms, p95 {row['p95_ms']:.0f} ms, errors {row['errors']:.0f}"
        )


if __name__ == "__main__":
    main()
