"""The openai backend's concurrency limit under faults: error cuts once per round trip
against halving on every error, same fault server and schedule, side by side in one run.

The peers' fault server (``../shared/peers/fault_llm_server.py``) answers 30 % of requests
with 429 / 500 / 503 / hangs / malformed or truncated bodies, each after ``--latency``. With
64 requests in flight, one bad round trip brings ~19 errors at once; halving on each sent
the limit to its floor. Reported per variant: wall time, requests per second, the limit at
the end and its lowest value, the cuts taken and skipped.

    python bench/openai_faults.py [--requests 600] [--fault-rate 0.3] [--latency 0.2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synthtune.config import OpenAIBackendConfig
from synthtune.llm.backends import GenerationRequest
from synthtune.llm.backends.openai_compat import AdaptiveLimiter, OpenAIBackend

SERVER = Path(__file__).resolve().parents[2] / "shared" / "peers" / "fault_llm_server.py"


def run(url: str, n: int, once_per_round_trip: bool, tag: str) -> dict[str, float]:
    lowest = [1e9]
    original = AdaptiveLimiter.overloaded

    def overloaded(self: AdaptiveLimiter, signal: str = "error", sent_at: float | None = None):  # type: ignore[no-untyped-def]
        original(self, signal, sent_at if once_per_round_trip else None)
        lowest[0] = min(lowest[0], self.limit)
        run.limiter = self  # type: ignore[attr-defined]

    AdaptiveLimiter.overloaded = overloaded  # type: ignore[method-assign]
    try:
        cfg = OpenAIBackendConfig(
            type="openai",
            base_url=url,
            model="fake",
            api_key_env=None,
            concurrency=64,
            timeout_s=2.0,
            max_retries=8,
            max_backoff_s=2.0,
        )
        requests = [
            GenerationRequest(f"{tag}{i}", [{"role": "user", "content": f"{tag} q{i}"}])
            for i in range(n)
        ]
        started = time.perf_counter()
        results = OpenAIBackend(cfg, None).generate(requests)
        wall = time.perf_counter() - started
    finally:
        AdaptiveLimiter.overloaded = original  # type: ignore[method-assign]
    limiter = run.limiter  # type: ignore[attr-defined]
    return {
        "wall_s": wall,
        "req_per_s": n / wall,
        "ok": sum(r.text is not None for r in results),
        "limit_end": limiter.limit,
        "limit_lowest": lowest[0],
        "cuts": limiter.shrinks["error"],
        "skipped": limiter.shrinks_skipped,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--latency", type=float, default=0.2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        server = subprocess.Popen(
            [
                sys.executable,
                str(SERVER),
                "--port-file",
                str(port_file),
                "--fault-rate",
                str(args.fault_rate),
                "--latency",
                str(args.latency),
                "--hang-seconds",
                "3",
            ],
        )
        try:
            while not port_file.exists() or not port_file.read_text().strip():
                time.sleep(0.05)  # a bench, not a test: waiting for the server to listen
            url = f"http://127.0.0.1:{port_file.read_text().strip()}/v1"
            rows = {
                "halve per error": run(url, args.requests, False, "a"),
                "once per round trip": run(url, args.requests, True, "b"),
            }
        finally:
            server.terminate()
    print(f"{args.requests} requests, fault rate {args.fault_rate}, latency {args.latency} s")
    for name, row in rows.items():
        print(
            f"{name:>20}: {row['req_per_s']:6.1f} req/s ({row['wall_s']:.1f} s), ok {row['ok']}, "
            f"limit end {row['limit_end']:.1f} lowest {row['limit_lowest']:.1f}, "
            f"cuts {row['cuts']} skipped {row['skipped']}"
        )
    a, b = rows["halve per error"], rows["once per round trip"]
    print(
        "throughput ratio (once per round trip / per error): "
        f"{b['req_per_s'] / a['req_per_s']:.2f}x"
    )


if __name__ == "__main__":
    main()
