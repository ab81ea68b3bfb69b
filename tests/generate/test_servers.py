"""Several servers of one model (``more_base_urls``): least-in-flight balancing, a dead or
failing server rested, the cause of every retry naming its server, and recipe checks."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synthtune.cli import app
from synthtune.config import OpenAIBackendConfig, load_recipe
from synthtune.config.base import fingerprint_dump
from synthtune.llm.backends.openai_compat import Servers
from synthtune.testing.fake_openai import FakeOpenAI
from tests.conftest import write_recipe
from tests.generate.test_overload import _backend, _requests


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_least_in_flight_wins_ties_go_in_turn_and_a_failing_server_rests() -> None:
    clock = Clock()
    servers = Servers(["http://a/v1/", "http://b/v1", "http://c/v1"], rest_s=5.0, clock=clock)
    assert servers.urls == ["http://a/v1", "http://b/v1", "http://c/v1"]
    assert [servers.pick() for _ in range(3)] == [0, 1, 2]  # ties: in turn
    servers.done(1, overloaded=False)
    assert servers.pick() == 1  # the only one with a free slot
    servers.done(0, overloaded=True)  # a 503 or a refused connection
    assert servers.in_flight == [0, 1, 1]
    assert servers.pick() != 0  # server a rests although it has nothing in flight
    clock.now = 6.0
    assert servers.pick() == 0  # rested
    every = Servers(["http://a/v1", "http://b/v1"], clock=clock)
    every.resting_until = [99.0, 99.0]
    assert every.pick() == 0  # all resting: the least loaded still serves


def test_requests_spread_over_servers_and_the_faster_one_takes_more() -> None:
    fast, slow = FakeOpenAI(latency_s=0.01), FakeOpenAI(latency_s=0.15)
    with fast as fast_url, slow as slow_url:
        backend = _backend(fast_url, more_base_urls=[slow_url], concurrency=8, server_metrics="off")
        results = backend.generate(_requests(120))
        backend.close()
    assert [r.text for r in results] == [f"echo: ok {i}" for i in range(120)]
    assert len(fast.attempts) + len(slow.attempts) == 120  # nothing sent twice
    assert len(slow.attempts) >= 3  # both served
    assert len(fast.attempts) > 2 * len(slow.attempts)  # least in flight favours the fast one
    assert backend.servers is not None and backend.servers.in_flight == [0, 0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_dead_server_costs_retries_with_its_name_and_no_record() -> None:
    dead = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens there
    alive = FakeOpenAI(latency_s=0.01)
    with alive as url:
        backend = _backend(dead, more_base_urls=[url], server_metrics="off", max_retries=3)
        results = backend.generate(_requests(40))
        backend.close()
    assert [r.text for r in results] == [f"echo: ok {i}" for i in range(40)]
    reasons = [reason for r in results for reason in r.retry_reasons]
    assert reasons and all(reason.endswith(f"from {dead}") for reason in reasons)
    assert all("ConnectError" in reason for reason in reasons)
    assert backend.servers is not None
    # rested after its first failures: most requests never tried it
    assert backend.servers.sent[0] <= 12 and len(alive.attempts) == 40


def test_server_urls_are_checked_and_leave_the_fingerprint_alone(tmp_path: Path) -> None:
    config = {"type": "openai", "model": "m", "base_url": "http://a:8000/v1"}
    more = OpenAIBackendConfig(**config, more_base_urls=["http://b:8000/v1"])
    assert fingerprint_dump(more) == fingerprint_dump(OpenAIBackendConfig(**config))
    with pytest.raises(ValueError, match="Batch API mode talks to one provider"):
        OpenAIBackendConfig(**config, more_base_urls=["http://b/v1"], mode="batch")
    backend = {**config, "api_key_env": None, "more_base_urls": ["node2:8000/v1"]}
    path = write_recipe(tmp_path, {"generate": {"backend": backend}})
    result = CliRunner().invoke(app, ["validate", str(path)])
    output = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 2
    assert "generate.backend.more_base_urls" in output
    assert "'node2:8000/v1' is not an http(s) URL" in output
    assert load_recipe(write_recipe(tmp_path, {"generate": {"backend": config}}))
