"""openai backend: throughput at concurrency 32 vs one stream, against a loopback server with a
fixed 200 ms latency per request, measured side by side in one run.

Goal (issue 4): throughput(32) >= 0.9 x 32 x throughput(1).

    python bench/openai_concurrency.py [--requests 128]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

from synthtune.config import OpenAIBackendConfig
from synthtune.llm.backends import GenerationRequest
from synthtune.llm.backends.openai_compat import OpenAIBackend
from synthtune.testing.fake_openai import FakeOpenAI


def throughput(url: str, concurrency: int, n: int) -> float:
    cfg = OpenAIBackendConfig(
        type="openai", base_url=url, model="fake", api_key_env=None, concurrency=concurrency
    )
    requests = [GenerationRequest(str(i), [{"role": "user", "content": f"q{i}"}]) for i in range(n)]
    started = time.perf_counter()
    results = OpenAIBackend(cfg, None).generate(requests)
    elapsed = time.perf_counter() - started
    assert all(r.text for r in results)
    return n / elapsed


def serve(queue: mp.Queue, stop: mp.Event) -> None:  # type: ignore[type-arg]
    """The server in its own process, so it does not share the client's GIL."""
    with FakeOpenAI(latency_s=0.2) as url:
        queue.put(url)
        stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1024)
    args = parser.parse_args()
    queue: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    stop = mp.Event()
    server = mp.Process(target=serve, args=(queue, stop), daemon=True)
    server.start()
    url = queue.get(timeout=30)
    try:
        single = throughput(url, 1, 16)
        many = throughput(url, 32, args.requests)
    finally:
        stop.set()
        server.join(timeout=10)
    ratio = many / (32 * single)
    print(f"1 stream: {single:.2f} req/s; 32 streams: {many:.2f} req/s")
    print(f"ratio to ideal 32x: {ratio:.3f} (goal >= 0.9)")


if __name__ == "__main__":
    main()
