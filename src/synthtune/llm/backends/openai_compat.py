"""The ``openai`` backend: any OpenAI-compatible server (vLLM, llama.cpp, Ollama, hosted APIs).

Async with ``httpx``: at most ``concurrency`` requests in flight, adapted below it like TCP's
congestion window (slow start, then AIMD on 429/5xx/connection errors/timeouts, and cut when
latency grows or vLLM's waiting queue grows), a circuit breaker that pauses every request
while the server keeps refusing, optional requests-per-minute pacing,
connect/read/pool timeouts, and bounded retries (``tenacity``) with exponential backoff and full
jitter on 429, 5xx, timeouts, connection errors and malformed or empty replies. A
``Retry-After`` header wins over the computed backoff (capped by ``max_backoff_s``). Every
request ends as a reply or as an error with its reason; one bad reply never sinks its batch.

Libraries, and why two pieces stay here: the retry loop is tenacity's. The AIMD concurrency
limit has no maintained asyncio library (aiolimiter and asyncio.Semaphore are fixed limits).
The RPM/TPM pacer spaces request starts evenly; aiolimiter's leaky bucket (the library
candidate) lets a full bucket through at once -- e.g. all 60 requests of ``max_rpm: 60`` in
the first second -- which is the burst a per-second server limit answers with 429s.

The API key is read from the environment variable named in the recipe, sent only in the
Authorization header, and never stored, logged or put into an error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import statistics
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from synthtune import plugins
from synthtune.config import OpenAIBackendConfig
from synthtune.errors import BackendError
from synthtune.llm.backends.base import GenerationRequest, GenerationResult
from synthtune.llm.tokens import estimate_messages
from synthtune.secrets import register_secret

if TYPE_CHECKING:
    import httpx
    from tenacity import AsyncRetrying, RetryCallState


RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class _Retryable(Exception):
    """A failure worth another attempt; ``overload``: the server signals it is saturated
    (429, 5xx, a refused or reset connection, a timeout), which shrinks the limit."""

    def __init__(
        self,
        reason: str,
        retry_after: float | None = None,
        overload: bool = False,
        stale: bool = False,
        answered: bool = False,
    ) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.overload = overload
        self.stale = stale  # a dropped kept-alive connection: the first retry waits not
        self.answered = answered  # the server replied (badly): it is up
        self.free = False  # failed while the breaker was open: not charged to the budget


class AdaptiveLimiter:
    """Requests in flight, adapted like TCP's congestion window: slow start from
    ``min(start, maximum)`` (+1 per success: the limit doubles per window of successes) until
    the first overload signal, then AIMD (halve on overload, +1 per window of successes),
    never above ``maximum``. Slow start matters on loopback and small servers too: 64 new
    connections at once overflow a listen backlog of 5 (measured on the peers' fault server:
    17-42 connection resets per 200 requests at a fixed 64).

    Two more overload signals than errors. **Latency** (delay-based, like TCP Vegas or
    Netflix's concurrency-limits Gradient2): the median latency of each window of successes
    (``max(32, limit)`` replies) is compared with the no-load latency: the lowest window
    median seen, approached by at most 10 % per window and drifting up 2 % per window, so
    neither one lucky window nor a lasting change of the server pins it (with replies of
    random length, a plain minimum of window medians sank to half their mean and cut the
    limit at a constant load). Above ``latency_tolerance`` times it, requests are
    queueing somewhere: the limit shrinks by ``tolerance * no_load / median`` (at most
    halved), proportionally to the excess, and slow start ends. A window's median, not
    single replies nor a mean: one reply's latency follows its length, and a few slow
    ones (a connection set up after a dropped SYN: +1 s on loopback, measured on the peers'
    fault server during slow start) pull a mean up while the server is not queueing; when
    it is, every reply waits and the median moves. After a cut, replies to requests sent
    before it are left out of the next window (one cut per round trip, as TCP cuts once per
    window of data): they waited under the old limit, and counting them cut 64 -> 5 in five
    windows on the fault server where one or two cuts were due. At a constant latency
    nothing changes. **The server's queue** (``server_queue``,
    fed from vLLM's ``/metrics``): while requests wait there the limit stops growing, and a
    growing queue halves it -- more in flight would only wait in the server's queue.
    """

    LATENCY_WINDOW = 32  # replies per latency window at least
    BASELINE_DRIFT = 0.02  # the no-load latency may rise this much per window
    BASELINE_FALL = 0.1  # and fall this much: one lucky window does not set it

    def __init__(
        self,
        maximum: int,
        start: int = 16,
        latency_tolerance: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.maximum = maximum
        self.limit = float(min(start, maximum))
        self.slow_start = True
        self.in_flight = 0
        self._cond = asyncio.Condition()
        self.latency_tolerance = latency_tolerance
        self.clock = clock  # times each attempt (the backend reads it; tests inject one)
        self.no_load: float | None = None  # seconds: the lowest window median, drifting up
        self.window_median: float | None = None  # the last complete window's median latency
        self._window: list[float] = []
        self._cut_at = float("-inf")  # when latency last cut the limit (clock time)
        self.hold = False  # the server's queue is not empty: no growth
        self._waiting: int | None = None
        self.shrinks = {"error": 0, "latency": 0, "queue": 0}  # why the limit went down
        self.shrinks_skipped = 0  # errors of requests sent before the last error cut
        self._error_cut_at = float("-inf")

    async def __aenter__(self) -> AdaptiveLimiter:
        async with self._cond:
            await self._cond.wait_for(lambda: self.in_flight < max(1, int(self.limit)))
            self.in_flight += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        async with self._cond:
            self.in_flight -= 1
            # Wake only as many waiters as there are free slots: notify_all would wake every
            # queued request on each release (quadratic in the queue length).
            self._cond.notify(max(1, int(self.limit) - self.in_flight))

    def overloaded(self, signal: str = "error", sent_at: float | None = None) -> None:
        """Halve the limit, once per round trip: a failure of a request sent (``sent_at``,
        clock time) before the last error cut was in flight under the old limit and is
        already answered by that cut (TCP halves once per window of data, not per lost
        segment). Halving on each error collapsed the limit to ~5 at a 30 % fault rate."""
        if sent_at is not None and sent_at < self._error_cut_at:
            self.shrinks_skipped += 1
            return
        self.slow_start = False
        self.limit = max(1.0, self.limit / 2)
        self.shrinks[signal] += 1
        self._error_cut_at = self.clock()

    def succeeded(self, latency: float | None = None) -> None:
        if latency is not None and self.latency_tolerance and self._latency(latency):
            return  # shrunk on this reply's window: no growth
        if self.hold:
            return
        step = 1.0 if self.slow_start else 1.0 / max(1.0, self.limit)
        self.limit = min(float(self.maximum), self.limit + step)

    def _latency(self, seconds: float) -> bool:
        """Add a reply's latency to the window; at a window's end, shrink if the median has
        grown past the tolerance (True when it shrank)."""
        if self.clock() - seconds < self._cut_at:
            return False  # sent before the last cut: it waited under the old limit
        self._window.append(seconds)
        if len(self._window) < max(self.LATENCY_WINDOW, int(self.limit)):
            return False
        median, self._window = statistics.median(self._window), []
        self.window_median = median
        if self.no_load is None:
            self.no_load = median
            return False
        low, high = (
            self.no_load * (1 - self.BASELINE_FALL),
            self.no_load * (1 + self.BASELINE_DRIFT),
        )
        self.no_load = max(low, min(median, high))
        tolerance = self.latency_tolerance or 0.0
        if median <= tolerance * self.no_load:
            return False
        self.slow_start = False
        self.limit = max(1.0, self.limit * max(0.5, tolerance * self.no_load / median))
        self.shrinks["latency"] += 1
        self._cut_at = self.clock()
        return True

    def server_queue(self, waiting: int) -> None:
        """The server's waiting queue (vLLM ``num_requests_waiting``), read about once a
        second: hold while it is not empty, halve when it grew (to 2 or more waiting)."""
        previous, self._waiting = self._waiting, waiting
        self.hold = waiting > 0
        if previous is not None and waiting > previous and waiting >= 2:
            self.overloaded("queue")


class RatePacer:
    """Paces request starts for RPM and TPM limits (a leaky bucket per limit).

    Each request advances a "next free" clock by ``60 / max_rpm`` seconds and another by
    ``tokens * 60 / max_tpm`` seconds, where tokens = estimated prompt + ``max_tokens``; a
    request starts when both clocks allow it. Bursts are smoothed rather than rejected.
    """

    def __init__(self, max_rpm: int | None, max_tpm: int | None = None) -> None:
        self.max_rpm = max_rpm
        self.max_tpm = max_tpm
        self._next_rpm = 0.0
        self._next_tpm = 0.0
        self._lock = asyncio.Lock()

    async def wait(self, tokens: int = 0) -> None:
        if not self.max_rpm and not self.max_tpm:
            return
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next_rpm, self._next_tpm)
            if self.max_rpm:
                self._next_rpm = start + 60.0 / self.max_rpm
            if self.max_tpm:
                self._next_tpm = start + tokens * 60.0 / self.max_tpm
        await asyncio.sleep(start - now)


class _Unavailable(Exception):
    """The server refused for longer than ``max_pause_s``: the request fails, not retried."""


class CircuitBreaker:
    """Pauses every request while the server keeps refusing, instead of letting each one burn
    its retries and fail.

    Closed (normal) until ``failures`` overload failures (429, 5xx, a refused connection, a
    timeout) arrive in a row, across requests, with no reply between them; then open: every
    request waits in ``admit`` for a cool-down (``cooldown_s``, doubling up to
    ``max_cooldown_s`` while the server keeps refusing), then half-open: one request goes
    as a probe while the others keep waiting; a reply closes it, an overload failure opens it
    again. A failure that arrives while the breaker is not closed (those in flight when it
    opened, a failed probe) is not charged to the request's retry budget. An outage longer
    than ``max_pause_s`` fails the waiting requests ("server unavailable for N s") and the
    breaker stays down: requests fail at once, and one probe per ``max_cooldown_s`` checks
    whether the server is back -- a run ends, it never hangs. Runs on the backend's event
    loop only (no locks)."""

    def __init__(
        self,
        failures: int,
        cooldown_s: float = 1.0,
        max_cooldown_s: float = 60.0,
        max_pause_s: float = 600.0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self.max_cooldown_s = max(cooldown_s, max_cooldown_s)
        self.max_pause_s = max_pause_s
        self.log = log or (lambda text: None)
        self.state = "closed"  # closed | open | half_open | down
        self.in_a_row = 0
        self.cause = ""
        self.pause = cooldown_s  # the next cool-down
        self.until = 0.0  # open: when the cool-down ends; down: when the next probe may go
        self.outage_start = 0.0
        self.probing = False
        self.pauses = 0  # outages (closed -> open)
        self._paused_s = 0.0  # outages that ended
        self._changed: asyncio.Event | None = None

    def paused_s(self) -> float:
        """Seconds paused in all outages, the current one up to now."""
        current = time.monotonic() - self.outage_start if self.state != "closed" else 0.0
        return self._paused_s + current

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
        self._changed = asyncio.Event()

    async def _wait(self, seconds: float) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), max(0.0, seconds))

    def _unavailable(self) -> _Unavailable:
        down = time.monotonic() - self.outage_start
        shown = f"{down:.0f}" if down >= 10 else f"{down:.1f}"
        return _Unavailable(f"server unavailable for {shown} s ({self.cause})")

    async def admit(self) -> bool:
        """Wait until a request may go; True when it goes as the probe. Raises
        ``_Unavailable`` once the outage has lasted ``max_pause_s``."""
        while True:
            if self.state == "closed":
                return False
            now = time.monotonic()
            if self.state == "down":
                if now >= self.until and not self.probing:
                    self.probing = True
                    self.until = now + self.max_cooldown_s
                    return True
                raise self._unavailable()
            deadline = self.outage_start + self.max_pause_s
            if now >= deadline:
                self._give_up()
                continue
            if self.state == "open" and now >= self.until:
                self.state = "half_open"
            if self.state == "half_open" and not self.probing:
                self.probing = True
                return True
            # open: until the cool-down ends; half-open: until the probe's answer
            end = self.until if self.state == "open" else deadline
            await self._wait(min(end, deadline) - now)

    def _give_up(self) -> None:
        self.state = "down"
        self.probing = False
        self.until = time.monotonic() + self.max_cooldown_s
        self.log(
            f"server unavailable for {self.max_pause_s:g} s ({self.cause}): failing its "
            f"requests; one probe every {self.max_cooldown_s:g} s"
        )
        self._notify()

    def answered(self, probe: bool) -> None:
        """The server replied (also an error reply other than overload)."""
        self.in_a_row = 0
        if probe:
            self.probing = False
        if self.state != "closed":
            paused = time.monotonic() - self.outage_start
            self._paused_s += paused
            self.state, self.pause = "closed", self.cooldown_s
            self.log(f"server answering again: resumed after {paused:.1f} s paused")
            self._notify()

    def failed(self, cause: str, probe: bool) -> bool:
        """An overload failure; True when it is free (the breaker was or is now open)."""
        if probe:
            self.probing = False
        if self.state == "closed":
            self.in_a_row += 1
            if not self.failures or self.in_a_row < self.failures:
                return False
            self.pauses += 1
            self.outage_start = time.monotonic()
            self.pause = self.cooldown_s
            self._open(f"{self.in_a_row} failures in a row, last: {cause}")
        elif probe and self.state == "half_open":
            self.pause = min(self.max_cooldown_s, self.pause * 2)
            self._open(f"probe failed: {cause}")
        elif probe:  # down: the next probe in max_cooldown_s (set in admit)
            self._notify()
        return True

    def neutral(self, probe: bool) -> None:
        """Neither a reply nor overload (a dropped kept-alive connection): another probe."""
        if probe:
            self.probing = False
            self._notify()

    def _open(self, cause: str) -> None:
        self.state, self.cause = "open", cause
        self.until = time.monotonic() + self.pause
        self.log(f"server refusing: pausing {self.pause:g} s ({cause})")
        self._notify()


METRICS_INTERVAL_S = 1.0  # /metrics is read at most this often
# vLLM's scheduler gauges (names as vLLM exports them, v0 and V1 engines; one sample per
# engine / model label set, summed)
VLLM_WAITING = "vllm:num_requests_waiting"
VLLM_RUNNING = "vllm:num_requests_running"
_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{.*\})?\s+(\S+)")


def parse_gauges(
    text: str, names: tuple[str, ...] = (VLLM_WAITING, VLLM_RUNNING)
) -> dict[str, float]:
    """The summed value of each named metric found in a Prometheus text exposition.

    prometheus_client's parser when it is installed (the reference implementation of the
    format); it is an optional dependency, and it rejects a whole page for one line it
    cannot read, so otherwise -- and when it fails -- a line parser that reads
    ``name{labels} value [timestamp]`` and skips comments and lines it does not understand.
    Two gauges are all we need."""
    found: dict[str, float] = {}
    try:
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in names:
                    found[sample.name] = found.get(sample.name, 0.0) + float(sample.value)
        return found
    except Exception:  # ImportError, or the strict parser refused the page
        found = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if match is None or match.group(1) not in names:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        found[match.group(1)] = found.get(match.group(1), 0.0) + value
    return found


def metrics_url(base_url: str) -> str:
    """``/metrics`` at the server's root: ``base_url`` without its trailing ``/v1``."""
    root = base_url.rstrip("/")
    if root.endswith("/v1"):
        root = root[: -len("/v1")]
    return root + "/metrics"


class ServerMetrics:
    """Reads the server's waiting queue from its Prometheus ``/metrics`` about every
    ``interval_s``, from a task started by the requests themselves (no timer of its own, so
    an idle backend polls nothing), and feeds it to the limiter. ``auto``: the first read
    decides -- no page, no vLLM queue gauge, or a failure, and polling stops silently."""

    def __init__(
        self,
        url: str,
        limiter: AdaptiveLimiter,
        interval_s: float = 1.0,
        timeout_s: float = 2.0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url
        self.limiter = limiter
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.log = log or (lambda text: None)
        self.enabled = True
        self.seen = False  # a page with the queue gauge was read
        self.reads = 0
        self.waiting: int | None = None
        self.running: int | None = None
        self._next = 0.0
        self._task: asyncio.Task[None] | None = None

    def maybe_poll(self, client: httpx.AsyncClient) -> None:
        if not self.enabled or self._task is not None:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval_s
        self._task = asyncio.get_running_loop().create_task(self._poll(client))

    async def _poll(self, client: httpx.AsyncClient) -> None:
        gauges: dict[str, float] = {}
        status = 0
        try:
            response = await client.get(self.url, timeout=self.timeout_s)
            status = response.status_code
            if status == 200:
                gauges = parse_gauges(response.text)
        except Exception:  # unreachable, a timeout, a page that is not text: no reading
            pass
        finally:
            self._task = None
        if VLLM_WAITING not in gauges:
            if not self.seen or status == 404:
                self.enabled = False  # auto: this server has no vLLM metrics, quietly off
            return
        if not self.seen:
            self.log(f"server metrics at {self.url}: pacing by vLLM's waiting queue")
        self.seen = True
        self.reads += 1
        self.waiting = int(gauges[VLLM_WAITING])
        self.running = int(gauges[VLLM_RUNNING]) if VLLM_RUNNING in gauges else None
        self.limiter.server_queue(self.waiting)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to the computed backoff


class Servers:
    """Several servers of one model (``base_url`` + ``more_base_urls``): each attempt goes to
    the server with the fewest requests in flight (ties in turn), so a slower server gets
    fewer; a server whose last attempt failed with an overload signal (refused connection,
    timeout, 429/5xx) rests ``rest_s`` seconds unless every server rests. Used from the
    backend's event loop only, so no lock."""

    def __init__(
        self,
        urls: list[str],
        rest_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.urls = [url.rstrip("/") for url in urls]
        self.in_flight = [0] * len(self.urls)
        self.sent = [0] * len(self.urls)
        self.resting_until = [0.0] * len(self.urls)
        self.rest_s, self.clock = rest_s, clock
        self._turn = 0

    def pick(self) -> int:
        count, now = len(self.urls), self.clock()
        ready = [i for i in range(count) if self.resting_until[i] <= now] or list(range(count))
        best = min(ready, key=lambda i: (self.in_flight[i], (i - self._turn) % count))
        self._turn = (best + 1) % count
        self.in_flight[best] += 1
        self.sent[best] += 1
        return best

    def done(self, index: int, overloaded: bool) -> None:
        self.in_flight[index] -= 1
        if overloaded:
            self.resting_until[index] = self.clock() + self.rest_s


class OpenAIBackend:
    name = "openai"
    concurrent_calls = True  # generate() from several threads share one loop and one limit

    def __init__(self, config: OpenAIBackendConfig, api_key: str | None) -> None:
        self.config = config
        self.model = config.model
        self._api_key = api_key
        self.retries = 0
        self._client: httpx.AsyncClient | None = None
        self._limiter: AdaptiveLimiter | None = None
        self._pacer: RatePacer | None = None
        self._breaker: CircuitBreaker | None = None
        self._metrics: ServerMetrics | None = None
        self.events: list[str] = []  # breaker and metrics notes, also sent to the log
        self._log: Callable[[str], None] | None = None
        self._timeout = timeouts(config)
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._loop_lock = threading.Lock()
        urls = [config.base_url, *config.more_base_urls]
        self.servers = Servers(urls) if len(urls) > 1 else None

    def _body(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        cfg = self.config
        body: dict[str, Any] = {
            "model": cfg.model,
            "max_tokens": cfg.max_tokens,
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
        }
        if cfg.stop:
            body["stop"] = cfg.stop
        if cfg.endpoint == "chat":
            return "/chat/completions", {**body, "messages": request.messages}
        prompt = "\n".join(m["content"] for m in request.messages)
        return "/completions", {**body, "prompt": prompt}

    def _parse(self, response: httpx.Response) -> GenerationResult:
        try:
            data = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _Retryable("malformed JSON reply", answered=True) from None
        try:
            choice = data["choices"][0]
            text = (
                choice["message"]["content"] if self.config.endpoint == "chat" else choice["text"]
            )
        except (KeyError, IndexError, TypeError):
            raise _Retryable("reply without choices[0] content", answered=True) from None
        if not isinstance(text, str) or not text.strip():
            raise _Retryable("empty reply", answered=True)
        usage = data.get("usage") or {}
        return GenerationResult(
            text=text.strip(),
            tokens_in=int(usage.get("prompt_tokens") or 0),
            tokens_out=int(usage.get("completion_tokens") or 0),
        )

    async def _attempt(
        self, client: httpx.AsyncClient, request: GenerationRequest
    ) -> GenerationResult:

        path, body = self._body(request)
        servers = self.servers
        if servers is None:
            return await self._post(client, path, body)
        index = servers.pick()
        try:
            result = await self._post(client, servers.urls[index] + path, body)
        except _Retryable as exc:
            servers.done(index, exc.overload)
            exc.args = (f"{exc.args[0]} from {servers.urls[index]}",)  # the retry's cause
            raise
        except BaseException:
            servers.done(index, False)
            raise
        servers.done(index, False)
        return result

    async def _post(
        self, client: httpx.AsyncClient, url: str, body: dict[str, Any]
    ) -> GenerationResult:
        """One POST of ``body`` to ``url`` (a path under ``base_url``, or a whole URL)."""
        import httpx

        timeout = self._timeout
        try:
            response = await client.post(url, json=body)
        except httpx.ConnectTimeout:
            raise _Retryable(
                f"connect timeout after {timeout.connect:g} s", overload=True
            ) from None
        except httpx.PoolTimeout:  # our own pool (never with limit <= connections): no overload
            raise _Retryable(f"pool timeout after {timeout.pool:g} s") from None
        except httpx.WriteTimeout:
            raise _Retryable(f"write timeout after {timeout.write:g} s", overload=True) from None
        except httpx.TimeoutException:
            raise _Retryable(f"timeout after {timeout.read:g} s", overload=True) from None
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:
            # mostly a kept-alive connection the server closed while it sat idle (between
            # two flushes): not overload, and worth an immediate second try
            raise _Retryable(f"connection error: {type(exc).__name__}", stale=True) from None
        except httpx.TransportError as exc:
            raise _Retryable(f"connection error: {type(exc).__name__}", overload=True) from None
        if response.status_code in RETRYABLE_STATUS:
            status = response.status_code
            raise _Retryable(
                f"HTTP {status}", _retry_after(response), overload=status == 429 or status >= 500
            )
        if response.status_code >= 400:
            detail = response.text[:200].replace("\n", " ")
            return GenerationResult(text=None, error=f"HTTP {response.status_code}: {detail}")
        return self._parse(response)

    def _retrying(self, reasons: list[str], charged: list[int]) -> AsyncRetrying:
        """tenacity's retry loop: ``max_retries`` retries after the first attempt on a
        retryable failure, waiting ``Retry-After`` when the server sends one (capped by
        ``max_backoff_s``), else exponential backoff with full jitter (uniform in
        ``[0, min(max_backoff_s, backoff_s * 2**retry)]``, as AWS's backoff study advises).
        A failure while the circuit breaker is open is free: neither counted against
        ``max_retries`` (``charged`` holds the failures that are) nor waited for here (the
        breaker's pause is the wait)."""
        from tenacity import AsyncRetrying, retry_if_exception_type

        cfg = self.config
        backoff = retry_wait(cfg)

        def wait(state: RetryCallState) -> float:
            failure = state.outcome.exception() if state.outcome else None
            if getattr(failure, "free", False):
                return 0.0
            if getattr(failure, "stale", False) and state.attempt_number == 1:
                return 0.0
            return backoff(state)

        def count(state: RetryCallState) -> None:
            self.retries += 1
            failure = state.outcome.exception() if state.outcome else None
            reasons.append(str(failure) if failure else "unknown")

        def stop(state: RetryCallState) -> bool:
            return charged[0] > cfg.max_retries

        return AsyncRetrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception_type(_Retryable),
            before_sleep=count,
            reraise=True,
        )

    async def _one(
        self,
        client: httpx.AsyncClient,
        limiter: AdaptiveLimiter,
        pacer: RatePacer,
        request: GenerationRequest,
    ) -> GenerationResult:
        tokens = estimate_messages(request.messages) + self.config.max_tokens
        reasons: list[str] = []  # one per retry, with its cause
        charged = [0]  # failures charged to max_retries (not those while paused)
        breaker, metrics = self._breaker, self._metrics
        assert breaker is not None
        try:
            async for attempt in self._retrying(reasons, charged):
                with attempt:
                    probe = await breaker.admit()  # waits while the server refuses
                    async with limiter:
                        if metrics is not None:  # as requests start: none while idle
                            metrics.maybe_poll(client)
                        await pacer.wait(tokens)
                        started = limiter.clock()
                        try:
                            result = await self._attempt(client, request)
                        except _Retryable as exc:
                            if exc.overload:
                                limiter.overloaded(sent_at=started)
                                exc.free = breaker.failed(str(exc), probe)
                            elif exc.answered:
                                breaker.answered(probe)
                            else:
                                breaker.neutral(probe)
                            charged[0] += not exc.free
                            raise
                        except BaseException:
                            breaker.neutral(probe)  # cancelled: let another request probe
                            raise
                        limiter.succeeded(limiter.clock() - started)
                        breaker.answered(probe)
                    return GenerationResult(
                        result.text,
                        result.error,
                        result.tokens_in,
                        result.tokens_out,
                        attempts=attempt.retry_state.attempt_number,
                        retry_reasons=tuple(reasons),
                    )
        except _Retryable as exc:
            tries = len(reasons) + 1
            return GenerationResult(
                text=None,
                error=f"{exc} (gave up after {tries} attempts)",
                attempts=tries,
                retry_reasons=tuple(reasons),
            )
        except _Unavailable as exc:  # the refused attempt counts as one, unsent
            return GenerationResult(
                text=None, error=str(exc), attempts=len(reasons) + 1, retry_reasons=tuple(reasons)
            )
        raise AssertionError("unreachable: tenacity returns or re-raises")

    def _session(self) -> tuple[httpx.AsyncClient, AdaptiveLimiter, RatePacer]:
        """The client, limit and pacer, made once on the backend's loop and kept for every
        batch: the generate stage flushes a shard every ``flush_every`` items, and a fresh
        client and limit per batch would restart slow start and reconnect each time
        (measured: 34-43 gen/s at flush_every 64 vs 60-88 with one batch of 200)."""
        import httpx

        if self._client is None:
            headers = auth_headers(self._api_key)
            # Keep every connection alive: httpx keeps 20 by default, so above that each
            # request would pay a new TCP handshake.
            # (+1: the /metrics reader never waits for a free connection)
            cfg = self.config
            limits = httpx.Limits(
                max_connections=cfg.concurrency + 1,
                max_keepalive_connections=cfg.concurrency + 1,
            )
            self._client = httpx.AsyncClient(
                base_url=cfg.base_url.rstrip("/"),
                headers=headers,
                timeout=self._timeout,
                limits=limits,
            )
            self._limiter = AdaptiveLimiter(
                cfg.concurrency, latency_tolerance=cfg.latency_tolerance
            )
            self._pacer = RatePacer(cfg.max_rpm, cfg.max_tpm)
            self._breaker = CircuitBreaker(
                cfg.breaker_failures,
                cfg.breaker_cooldown_s,
                cfg.breaker_max_cooldown_s,
                cfg.max_pause_s,
                log=self._note,
            )
            # vLLM's queue depth is read from a single server; with several, the limit
            # follows their 429s, errors and latency alone
            if cfg.server_metrics == "auto" and self.servers is None:
                self._metrics = ServerMetrics(
                    metrics_url(cfg.base_url),
                    self._limiter,
                    interval_s=METRICS_INTERVAL_S,
                    timeout_s=min(2.0, self._timeout.connect or 2.0),
                    log=self._note,
                )
        assert self._limiter is not None and self._pacer is not None
        return self._client, self._limiter, self._pacer

    def bind(self, context: Any) -> None:
        """The engine's context (``BackendContext``): its ``log`` shows the breaker's pauses
        and resumptions to the user."""
        self._log = getattr(context, "log", None)

    def _note(self, text: str) -> None:
        self.events.append(text)
        if self._log is not None:
            self._log(f"{self.name} backend: {text}")

    def pause_stats(self) -> tuple[int, float]:
        """Outages the circuit breaker paused for, and the seconds paused in all."""
        if self._breaker is None:
            return 0, 0.0
        return self._breaker.pauses, self._breaker.paused_s()

    async def agenerate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        client, limiter, pacer = self._session()
        return list(await asyncio.gather(*(self._one(client, limiter, pacer, r) for r in requests)))

    def _loop(self) -> asyncio.AbstractEventLoop:
        """One event loop per backend, on a daemon thread, for the session to live in (made
        under a lock: the generate stage calls from two batch threads at once)."""
        with self._loop_lock:
            if self._event_loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="synthtune-openai", daemon=True
                )
                thread.start()
                self._event_loop, self._thread = loop, thread
            return self._event_loop

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        future = asyncio.run_coroutine_threadsafe(self.agenerate(requests), self._loop())
        return future.result()

    async def _aclose(self) -> None:
        if self._metrics is not None:
            await self._metrics.aclose()
        if self._client is not None:
            await self._client.aclose()

    def close(self) -> None:
        """Close the connections and stop the loop (the engine calls it at the stage's end)."""
        loop, self._event_loop = self._event_loop, None
        if loop is None:
            return
        if self._client is not None:
            asyncio.run_coroutine_threadsafe(self._aclose(), loop).result()
            self._client = None
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join()
        loop.close()


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The key in the Authorization header, the only place it is ever sent."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def retry_wait(config: OpenAIBackendConfig) -> Callable[[RetryCallState], float]:
    """tenacity's wait before a retry: the server's ``Retry-After`` when it sent one (capped
    by ``max_backoff_s``), else exponential backoff with full jitter."""
    from tenacity import wait_random_exponential

    jitter = wait_random_exponential(multiplier=config.backoff_s, max=config.max_backoff_s)

    def wait(state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        after = getattr(failure, "retry_after", None)
        return min(after, config.max_backoff_s) if after is not None else jitter(state)

    return wait


def timeouts(config: OpenAIBackendConfig) -> httpx.Timeout:
    """``httpx.Timeout`` from the recipe: connect, read and pool each default to
    ``timeout_s`` (the one timeout there was before), write is ``timeout_s``."""
    import httpx

    every = config.timeout_s
    return httpx.Timeout(
        every,
        connect=config.connect_timeout_s or every,
        read=config.read_timeout_s or every,
        write=every,
        pool=config.pool_timeout_s or every,
    )


def read_api_key(config: OpenAIBackendConfig) -> str | None:
    if config.api_key_env is None:
        return None
    key = os.environ.get(config.api_key_env)
    register_secret(key)  # redacted from every file and output from here on
    if not key:
        raise BackendError(
            f"generate.backend.api_key_env: environment variable {config.api_key_env} is not "
            "set; export it, or set api_key_env: null for a server without a key"
        )
    return key


def _create(config: Any, resolve_model: Callable[[str], str]) -> Any:
    if config.mode == "batch":  # the Batch API (llm/backends/openai_batch.py)
        from synthtune.llm.backends.openai_batch import OpenAIBatchBackend

        return OpenAIBatchBackend(config, read_api_key(config))
    return OpenAIBackend(config, read_api_key(config))


plugins.register_backend("openai", _create, config=OpenAIBackendConfig)
