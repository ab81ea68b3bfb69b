"""A loopback OpenAI-compatible server that misbehaves on request, for tests and benchmarks.

The user message steers it: ``fail:429x2`` answers 429 (with ``Retry-After``) to the first two
attempts, ``fail:500x1`` / ``fail:503x1`` likewise with 5xx, ``slow:1`` stalls the first attempt
for ``slow_s`` seconds, ``malformed`` and ``empty`` always answer broken JSON or empty content,
``truncated:1`` truncates the first reply, ``leak:401`` / ``leak:200`` echo the caller's
Authorization header in an error body and header / in the reply. Anything else gets
``echo: <prompt>`` after ``latency_s``. Every attempt is logged with its arrival time and
headers. ``refuse_s``: every request answers 503 for that long after the server starts (a
server restarting); ``metrics``: a function of the server giving its Prometheus ``/metrics``
page (404 without); ``in_flight`` / ``max_in_flight`` count requests being answered.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LoopbackFake:
    """Serves a fake on 127.0.0.1 from a thread: ``with Fake(...) as url:`` (``url`` ends in
    ``/v1``). Subclasses give ``_handler_class()``; a ``port`` attribute picks the port (0 or
    none: a free one)."""

    server: ThreadingHTTPServer
    thread: threading.Thread

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self) -> str:
        self.server = _Server(("127.0.0.1", getattr(self, "port", 0)), self._handler_class())
        # a short poll interval: stop() returns within 10 ms instead of 0.5 s
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, nothing logged; headers and body in one write, sent at once:
    without these, Nagle's algorithm and delayed ACKs add tens of milliseconds to every
    loopback reply."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = 1 << 16

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return


@dataclass
class Attempt:
    prompt: str
    at: float
    status: int
    authorization: str | None


@dataclass
class FakeOpenAI(LoopbackFake):
    latency_s: float = 0.0
    slow_s: float = 2.0
    retry_after_s: float = 0.2
    refuse_s: float = 0.0
    metrics: Callable[[FakeOpenAI], str] | None = None
    port: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    metric_reads: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    started_at: float = 0.0
    _counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _handler(self)

    def start(self) -> str:
        self.started_at = time.monotonic()  # refuse_s counts from here
        return super().start()

    def respond(self, prompt: str, authorization: str | None) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self._counts[prompt] += 1
            n = self._counts[prompt]
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        status = 500
        try:
            if time.monotonic() - self.started_at < self.refuse_s:
                status, headers, body = (
                    503,
                    dict[str, str](),
                    b'{"error": {"message": "restarting"}}',
                )
            else:
                status, headers, body = self._behaviour(prompt, n, authorization or "")
        finally:
            with self._lock:
                self.in_flight -= 1
                self.attempts.append(Attempt(prompt, time.monotonic(), status, authorization))
        return status, headers, body

    def metrics_page(self) -> str | None:
        with self._lock:
            self.metric_reads += 1
        return None if self.metrics is None else self.metrics(self)

    def _behaviour(
        self, prompt: str, n: int, authorization: str = ""
    ) -> tuple[int, dict[str, str], bytes]:
        if "leak:401" in prompt:  # a hostile server echoing the caller's key back
            error = {"error": {"message": f"bad key {authorization}", "key": authorization}}
            headers = {"WWW-Authenticate": f"Bearer {authorization}"}
            return 401, headers, json.dumps(error).encode()
        fail = re.search(r"fail:(\d{3})x(\d+)", prompt)
        if fail and n <= int(fail.group(2)):
            code = int(fail.group(1))
            headers = {"Retry-After": f"{self.retry_after_s:g}"} if code == 429 else {}
            return code, headers, b'{"error": {"message": "injected"}}'
        slow = re.search(r"slow:(\d+)", prompt)
        if slow and n <= int(slow.group(1)):
            time.sleep(self.slow_s)
        if "malformed" in prompt:
            return 200, {}, b'{"choices": [{"message": {"content": "x"'
        truncated = re.search(r"truncated:(\d+)", prompt)
        if truncated and n <= int(truncated.group(1)):
            return 200, {}, b'{"choices": [{"mess'
        time.sleep(self.latency_s)
        content = "" if "empty" in prompt else f"echo: {prompt}"
        if "leak:200" in prompt:
            content = f"your key is {authorization}"
        body = {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "text": content,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 2},
        }
        return 200, {}, json.dumps(body).encode()


class _Server(ThreadingHTTPServer):
    # The default listen backlog of 5 drops bursts of new connections (then retried by TCP
    # after a second), which a client at concurrency 32 opens at once.
    request_queue_size = 256
    daemon_threads = True


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            page = fake.metrics_page() if self.path == "/metrics" else None
            body = (page or "not found").encode()
            self.send_response(200 if page is not None else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            payload = json.loads(self.rfile.read(length) or b"{}")
            if "messages" in payload:
                prompt = payload["messages"][-1]["content"]
            else:
                prompt = payload.get("prompt", "")
            status, headers, body = fake.respond(prompt, self.headers.get("Authorization"))
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and left: expected for slow replies

    return Handler
