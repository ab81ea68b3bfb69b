"""The openai backend under overload: the limit shrinks on latency growth and on vLLM's
growing queue, a circuit breaker pauses (not fails) while the server refuses, timeouts are
configurable, and none of these knobs moves a fingerprint or a cache key."""

from __future__ import annotations

import hashlib
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from synthtune.config import OpenAIBackendConfig, load_recipe
from synthtune.config.base import fingerprint_dump
from synthtune.llm.backends import GenerationRequest, openai_compat
from synthtune.llm.backends.openai_compat import (
    AdaptiveLimiter,
    OpenAIBackend,
    metrics_url,
    parse_gauges,
    timeouts,
)
from synthtune.llm.cache import cache_key
from synthtune.pipeline import run_recipe
from synthtune.store import RunStore
from synthtune.testing.fake_openai import FakeOpenAI
from tests.conftest import ROOT, write_recipe

NEW_KNOBS = {
    "connect_timeout_s": 3.0,
    "read_timeout_s": 30.0,
    "pool_timeout_s": 4.0,
    "latency_tolerance": 3.0,
    "server_metrics": "off",
    "breaker_failures": 4,
    "breaker_cooldown_s": 0.5,
    "breaker_max_cooldown_s": 5.0,
    "max_pause_s": 60.0,
}


def _backend(url: str, **overrides) -> OpenAIBackend:
    settings = {
        "type": "openai",
        "base_url": url,
        "model": "fake",
        "api_key_env": None,
        "concurrency": 8,
        "timeout_s": 2.0,
        "max_retries": 2,
        "backoff_s": 0.01,
        "max_backoff_s": 0.05,
        **overrides,
    }
    return OpenAIBackend(OpenAIBackendConfig(**settings), api_key=None)


def _requests(n: int, prefix: str = "ok") -> list[GenerationRequest]:
    return [
        GenerationRequest(str(i), [{"role": "user", "content": f"{prefix} {i}"}]) for i in range(n)
    ]


class Clock:
    """A clock the test moves: each simulated reply advances it by its latency."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _replies(limiter: AdaptiveLimiter, clock: Clock, latencies: list[float]) -> None:
    for latency in latencies:
        started = limiter.clock()
        clock.now += latency
        limiter.succeeded(limiter.clock() - started)


# ----------------------------------------------------------------------------- latency signal
def test_limit_shrinks_when_latency_grows_and_recovers_when_it_falls() -> None:
    clock = Clock()
    limiter = AdaptiveLimiter(64, latency_tolerance=2.0, clock=clock)
    _replies(limiter, clock, [0.2] * 300)
    assert limiter.limit == 64 and limiter.shrinks["latency"] == 0
    assert limiter.no_load == pytest.approx(0.2)
    for _ in range(128):  # three times slower: queueing; caught within two windows
        _replies(limiter, clock, [0.6])
        if limiter.shrinks["latency"]:
            break
    assert limiter.shrinks["latency"] == 1 and not limiter.slow_start and limiter.limit < 64
    for _ in range(128):  # the next window is all slow: cut by the gradient, 2 * 0.2 / 0.6
        before = limiter.limit
        _replies(limiter, clock, [0.6])
        if limiter.shrinks["latency"] == 2:
            break
    assert limiter.limit == pytest.approx(before * 2 * limiter.no_load / 0.6)
    assert limiter.limit / before == pytest.approx(2 * 0.2 / 0.6, rel=0.1)
    _replies(limiter, clock, [0.6] * 200)  # still slow: keeps shrinking
    assert limiter.shrinks["latency"] >= 3 and limiter.limit < 30
    low = limiter.limit
    shrinks = limiter.shrinks["latency"]
    _replies(limiter, clock, [0.2] * 2000)  # load gone: grows again, no further shrink
    assert limiter.shrinks["latency"] == shrinks and limiter.limit > low + 5


def test_constant_or_noisy_latency_never_shrinks_the_limit() -> None:
    clock = Clock()
    limiter = AdaptiveLimiter(256, latency_tolerance=2.0, clock=clock)
    _replies(limiter, clock, [0.2] * 5000)
    assert limiter.limit == 256 and limiter.slow_start and limiter.shrinks["latency"] == 0
    # replies of random length (0.05-0.6 s), or a few slow connection set-ups (+1 s, one
    # reply in ten): window medians stay close together
    rng = random.Random(7)
    for maximum in (4, 64):
        noisy = [rng.uniform(0.05, 0.6) for _ in range(20_000)]
        spiky = [0.2 + (rng.random() < 0.1) for _ in range(20_000)]
        for latencies in (noisy, spiky):
            limiter = AdaptiveLimiter(maximum, latency_tolerance=2.0, clock=clock)
            _replies(limiter, clock, latencies)
            assert limiter.shrinks["latency"] == 0 and limiter.limit == maximum


def test_one_latency_cut_per_round_trip() -> None:
    """Replies to requests sent before a cut waited under the old limit: they do not cut
    again (the next window is made of requests sent after the cut)."""
    clock = Clock()
    limiter = AdaptiveLimiter(64, latency_tolerance=2.0, clock=clock)
    limiter.limit, limiter.slow_start = 32.0, False
    while limiter.no_load is None:
        _replies(limiter, clock, [0.2])  # no-load latency 0.2
    started = clock.now
    clock.now += 1.0  # 64 replies of requests all sent at `started`, all slow (1 s)
    for _ in range(64):
        limiter.succeeded(clock.now - started)
    assert limiter.shrinks["latency"] == 1  # one cut, not two
    _replies(limiter, clock, [1.0] * 40)  # sent after the cut and still slow: cut again
    assert limiter.shrinks["latency"] == 2


def test_latency_is_no_signal_when_turned_off() -> None:
    clock = Clock()
    limiter = AdaptiveLimiter(64, latency_tolerance=None, clock=clock)
    _replies(limiter, clock, [0.2] * 100 + [5.0] * 500)
    assert limiter.limit == 64 and limiter.shrinks["latency"] == 0


# ----------------------------------------------------------------------------- vLLM queue
VLLM_PAGE = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 12.0
vllm:num_requests_running{engine="1",model_name="Qwen/Qwen2.5-7B-Instruct"} 4.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 3.0 1712345678000
vllm:num_requests_waiting{engine="1",model_name="Qwen/Qwen2.5-7B-Instruct"} 2
vllm:num_requests_waiting_by_reason{reason="capacity"} 99
vllm:gpu_cache_usage_perc{engine="0"} 0.51
"""


def test_vllm_queue_gauges_are_parsed_and_summed_over_engines() -> None:
    assert parse_gauges(VLLM_PAGE) == {
        "vllm:num_requests_running": 16.0,
        "vllm:num_requests_waiting": 5.0,
    }
    # a damaged line does not lose the page (the fallback parser skips what it cannot read)
    damaged = VLLM_PAGE.replace('vllm:gpu_cache_usage_perc{engine="0"} 0.51', "garbage{ 1 2 3")
    assert parse_gauges(damaged)["vllm:num_requests_waiting"] == 5.0
    assert parse_gauges("# nothing here\nhttp_requests_total 3\n") == {}
    assert metrics_url("http://gpu:8000/v1") == "http://gpu:8000/metrics"
    assert metrics_url("http://gpu:8000/v1/") == "http://gpu:8000/metrics"
    assert metrics_url("http://gpu:8000/proxy/v1") == "http://gpu:8000/proxy/metrics"


def test_a_growing_server_queue_holds_then_halves_the_limit() -> None:
    limiter = AdaptiveLimiter(64)
    limiter.limit = 32.0
    limiter.server_queue(0)
    limiter.succeeded()
    assert limiter.limit == 33  # empty queue: grows
    limiter.server_queue(6)  # grew: halved, and held
    assert limiter.limit == 16.5 and limiter.hold and limiter.shrinks["queue"] == 1
    for _ in range(50):
        limiter.succeeded()
    assert limiter.limit == 16.5  # requests wait at the server: no growth
    limiter.server_queue(4)  # shrinking queue: no further cut, still held
    assert limiter.limit == 16.5 and limiter.shrinks["queue"] == 1
    limiter.server_queue(0)
    limiter.succeeded()
    assert limiter.limit > 16.5 and not limiter.hold


def _vllm_like(capacity: int):
    """vLLM's /metrics for a server that runs ``capacity`` requests and queues the rest."""

    def page(fake: FakeOpenAI) -> str:
        running = min(fake.in_flight, capacity)
        waiting = fake.in_flight - running
        return (
            "# TYPE vllm:num_requests_running gauge\n"
            f'vllm:num_requests_running{{model_name="fake"}} {running}.0\n'
            "# TYPE vllm:num_requests_waiting gauge\n"
            f'vllm:num_requests_waiting{{model_name="fake"}} {waiting}.0\n'
        )

    return page


def test_a_growing_vllm_queue_shrinks_the_limit(monkeypatch) -> None:
    monkeypatch.setattr(openai_compat, "METRICS_INTERVAL_S", 0.05)
    limits = {}
    for mode in ("auto", "off"):
        fake = FakeOpenAI(latency_s=0.05, metrics=_vllm_like(capacity=4))
        with fake as url:
            backend = _backend(url, concurrency=64, server_metrics=mode, latency_tolerance=None)
            results = backend.generate(_requests(200))
            assert all(r.text == f"echo: ok {i}" for i, r in enumerate(results))
            limiter = backend._limiter
            assert limiter is not None
            limits[mode] = (limiter.limit, limiter.shrinks["queue"], fake.metric_reads)
            backend.close()
    limit, shrinks, reads = limits["auto"]
    assert reads >= 2 and shrinks >= 1 and limit < 32  # stopped filling the server's queue
    assert limits["off"] == (64, 0, 0)  # off: never read, the limit grows to the maximum


def test_metrics_auto_turns_itself_off_without_a_metrics_page(monkeypatch) -> None:
    monkeypatch.setattr(openai_compat, "METRICS_INTERVAL_S", 0.0)
    for page in (None, lambda fake: "# a page without vLLM's gauges\nup 1\n"):
        fake = FakeOpenAI(latency_s=0.01, metrics=page)
        with fake as url:
            backend = _backend(url)
            results = backend.generate(_requests(40))
            assert all(r.error is None for r in results)
            assert fake.metric_reads == 1  # tried once, then off
            assert backend._metrics is not None and not backend._metrics.enabled
            assert backend.events == []  # silently
            backend.close()


# ----------------------------------------------------------------------------- circuit breaker
BREAKER = {
    "breaker_failures": 4,
    "breaker_cooldown_s": 0.05,
    "breaker_max_cooldown_s": 0.2,
    "max_pause_s": 60.0,
}


def test_a_refusing_server_pauses_the_run_and_every_record_succeeds() -> None:
    """503 for every request while the server 'restarts': with the breaker every record
    succeeds (the retry budget is not burnt while paused); without it, records fail."""
    outcomes = {}
    for failures in (4, 0):
        fake = FakeOpenAI(latency_s=0.01, refuse_s=1.0)
        with fake as url:
            backend = _backend(url, **{**BREAKER, "breaker_failures": failures})
            results = backend.generate(_requests(30))
            outcomes[failures] = (results, backend.pause_stats(), list(backend.events))
            backend.close()
    results, (pauses, paused_s), events = outcomes[4]
    assert [r.text for r in results] == [f"echo: ok {i}" for i in range(30)]
    assert pauses >= 1 and paused_s > 0
    assert any(e.startswith("server refusing: pausing 0.05 s (4 failures in a row") for e in events)
    assert events[-1].startswith("server answering again: resumed after")
    for result in results:  # every retry has its cause, and the budget was never exceeded
        assert len(result.retry_reasons) == result.attempts - 1
        assert all(reason == "HTTP 503" for reason in result.retry_reasons)
    unprotected, (pauses, _), _ = outcomes[0]
    assert pauses == 0
    assert any(r.error is not None and "HTTP 503 (gave up after 3" in r.error for r in unprotected)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_closed_port_that_opens_later_pauses_then_resumes() -> None:
    port = _free_port()
    fake = FakeOpenAI(port=port)
    starter = threading.Timer(0.5, fake.start)  # the server comes up while the run is paused
    starter.start()
    try:
        backend = _backend(f"http://127.0.0.1:{port}/v1", **BREAKER)
        results = backend.generate(_requests(20))
        backend.close()
    finally:
        starter.join()
        fake.stop()
    assert [r.text for r in results] == [f"echo: ok {i}" for i in range(20)]
    pauses, paused_s = backend.pause_stats()
    assert pauses >= 1 and paused_s >= 0.1
    assert any("ConnectError" in e for e in backend.events if e.startswith("server refusing"))


def test_a_server_that_never_recovers_fails_every_record_without_hanging() -> None:
    port = _free_port()  # nothing listens there
    backend = _backend(f"http://127.0.0.1:{port}/v1", **{**BREAKER, "max_pause_s": 0.4})
    began = time.monotonic()
    results = backend.generate(_requests(20))
    assert time.monotonic() - began < 20  # bounded by max_pause_s, not by retries x backoff
    assert all(r.text is None for r in results)
    assert all(r.error is not None and "server unavailable for" in r.error for r in results), [
        r.error for r in results
    ]
    assert any("ConnectError" in (r.error or "") for r in results)  # the cause is named
    assert any(e.startswith("server unavailable for 0.4 s") for e in backend.events)
    # the breaker stays down: the next call fails at once (one probe goes, and fails)
    began = time.monotonic()
    again = backend.generate(_requests(10, "later"))
    assert time.monotonic() - began < 5
    assert all("server unavailable" in (r.error or "") for r in again)
    backend.close()


def test_pauses_are_counted_in_the_stage_usage(tmp_path: Path) -> None:
    fake = FakeOpenAI(latency_s=0.01, refuse_s=1.0)
    with fake as url:
        backend = {"type": "openai", "base_url": url, "model": "fake", "api_key_env": None}
        backend.update(BREAKER, max_retries=1, backoff_s=0.01)
        recipe = write_recipe(tmp_path, {"generate": {"n": 16, "backend": backend}})
        result = run_recipe(load_recipe(recipe), tmp_path / "runs", until="generate", quiet=True)
    records = RunStore(result.run_dir).read_table("generate", "dataset")
    assert len(records) == 16 and all(r.status == "accepted" for r in records)
    usage = result.outcomes[-1].summary["usage"]
    assert usage["failed"] == 0 and usage["pauses"] >= 1 and usage["paused_s"] > 0


# ----------------------------------------------------------------------------- timeouts, flush
def test_timeouts_map_to_httpx_and_default_to_timeout_s() -> None:
    base = {"type": "openai", "model": "m", "api_key_env": None, "timeout_s": 7.0}
    assert timeouts(OpenAIBackendConfig(**base)) == httpx.Timeout(7.0)
    tuned = OpenAIBackendConfig(
        **base, connect_timeout_s=1.5, read_timeout_s=90.0, pool_timeout_s=2.5
    )
    assert timeouts(tuned) == httpx.Timeout(7.0, connect=1.5, read=90.0, pool=2.5)
    backend = OpenAIBackend(tuned, api_key=None)
    client, _, _ = backend._session()
    assert client.timeout == httpx.Timeout(7.0, connect=1.5, read=90.0, pool=2.5)


def test_read_timeout_applies_and_is_named_in_the_reason() -> None:
    fake = FakeOpenAI(slow_s=1.0)
    with fake as url:
        backend = _backend(url, timeout_s=5.0, read_timeout_s=0.2, breaker_failures=0)
        [result] = backend.generate(_requests(1, "slow:1"))
        backend.close()
    assert result.text == "echo: slow:1 0"
    assert result.retry_reasons == ("timeout after 0.2 s",)


def test_flush_every_does_not_cap_requests_in_flight(tmp_path: Path) -> None:
    fake = FakeOpenAI(latency_s=0.15)
    with fake as url:
        backend = {"type": "openai", "base_url": url, "model": "fake", "api_key_env": None}
        backend["concurrency"] = 16
        recipe = write_recipe(
            tmp_path, {"generate": {"n": 64, "flush_every": 4, "backend": backend}}
        )
        result = run_recipe(load_recipe(recipe), tmp_path / "runs", until="generate", quiet=True)
    assert len(RunStore(result.run_dir).read_table("generate", "dataset")) == 64
    # two overlapped shards of 4 would cap it at 8
    assert fake.max_in_flight >= 12, fake.max_in_flight


# ----------------------------------------------------------------------------- fingerprints
def test_new_knobs_move_no_fingerprint_at_their_defaults_and_no_cache_key() -> None:
    base = {"type": "openai", "model": "m", "api_key_env": None}
    default = OpenAIBackendConfig(**base)
    dump = fingerprint_dump(default)
    assert not set(NEW_KNOBS) & set(dump)  # absent: old fingerprints stay as they were
    tuned = OpenAIBackendConfig(**base, **NEW_KNOBS)
    messages = [{"role": "user", "content": "hi"}]
    assert cache_key(tuned.model_dump(mode="json"), messages, 0) == cache_key(
        default.model_dump(mode="json"), messages, 0
    )


# ----------------------------------------------------------------------------- peers' server
PEERS = Path(os.environ.get("SYNTHTUNE_PEERS_DIR", ROOT.parent / "shared" / "peers"))
FAULT_SERVER = PEERS / "fault_llm_server.py"


@pytest.mark.skipif(not FAULT_SERVER.exists(), reason="the peers' fault server is not here")
def test_every_retry_has_a_reason_at_concurrency_256_against_the_fault_server(
    tmp_path: Path,
) -> None:
    port_file = tmp_path / "port"
    server = subprocess.Popen(
        [
            sys.executable,
            str(FAULT_SERVER),
            "--port-file",
            str(port_file),
            "--fault-rate",
            "0.1",
            "--latency",
            "0.05",
            "--hang-seconds",
            "3",
            "--retry-after",
            "1",
            "--max-seconds",
            "120",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert time.monotonic() < deadline, "the fault server did not start"
            time.sleep(0.05)  # polling a subprocess's port file, not synchronising threads
        url = f"http://127.0.0.1:{int(port_file.read_text())}/v1"
        backend = _backend(url, concurrency=256, timeout_s=1.0, max_retries=5, max_backoff_s=1.0)
        requests = _requests(400, "question")
        results = backend.generate(requests)
        backend.close()
    finally:
        server.kill()
        server.wait()
    assert len(results) == 400
    for request, result in zip(requests, results, strict=True):
        assert len(result.retry_reasons) == result.attempts - 1
        assert all(isinstance(r, str) and r.strip() for r in result.retry_reasons)
        if result.error is None:
            digest = hashlib.sha256(request.messages[0]["content"].encode()).hexdigest()[:12]
            assert result.text is not None and result.text.startswith(f"回答 {digest}")
        else:
            assert result.text is None and "gave up after" in result.error
    assert sum(r.error is None for r in results) >= 390
    assert sum(r.attempts > 1 for r in results) >= 20  # faults were met and retried


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("latency_tolerance", 1.0, "greater than 1"),
        ("server_metrics", "sometimes", "'auto' or 'off'"),
        ("breaker_failures", -1, "greater than or equal to 0"),
        ("read_timeout_s", 0, "greater than 0"),
        ("mode", "async", "'sync' or 'batch'"),
        ("batch_max_requests", 0, "greater than 0"),
    ],
)
def test_a_bad_backend_knob_is_refused_before_any_work(
    tmp_path: Path, field: str, value: object, says: str
) -> None:
    from typer.testing import CliRunner

    from synthtune.cli import app
    from tests.conftest import write_recipe

    backend = {"type": "openai", "model": "m", "api_key_env": None, field: value}
    recipe = write_recipe(tmp_path, {"generate": {"backend": backend}})
    result = CliRunner().invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"generate.backend.{field}" in text and says in text
