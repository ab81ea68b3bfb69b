"""The ``openai`` backend's Batch API mode (``mode: batch``): the same requests at about half
the price, answered within the completion window (24 h) instead of seconds.

One call of ``generate(requests)`` (one batch of the generate stage) becomes one Batch API job,
or several of at most ``batch_max_requests`` lines (OpenAI accepts 50,000 per input file):

1. the requests go up as a JSONL file (``POST /files``, purpose ``batch``), one line each:
   ``{custom_id, method, url, body}`` with the body the synchronous backend would send;
2. ``POST /batches`` creates the job;
3. ``GET /batches/{id}`` is polled every ``batch_poll_s`` seconds (the progress bar shows the
   job's status and request counts) until it ends: completed, failed, expired or cancelled;
4. the output and error files (``GET /files/{id}/content``) are read and every line is mapped
   back to its request by ``custom_id``; lines come back in any order.

``custom_id`` is a content hash of the request (its body and sample index): the same request
always has the same id, so a line maps back exactly, and the jobs of an earlier run can be
matched to the requests of this one.

Resume: each job's state (its custom ids, input file id, batch id, status, file ids) is written
atomically into the stage's folder (``generate/backend-state/batch-<hash>.json``) after the
upload and again after the job is created, before any polling. A re-run after a crash or a
kill loads these files, and the requests a saved job covers are answered by polling that job,
never by a new one (nothing paid twice, nothing lost). A crash between creating the job and
saving its id is closed too: a saved input file without a batch id is looked up among the
account's recent batches (``GET /batches``) before a new job is created for it.

Failures are per request, never raised: a line in the error file, a reply that is not 200 or
cannot be parsed, or a request missing from both files (an expired or cancelled job: lines
that completed are still used; a failed job: the reasons from its ``errors``) becomes a result
with the reason. What is raised is what a re-run fixes: a Batch API call that fails after
``max_retries`` retries, or ``batch_max_wait_s`` spent (:class:`BatchPending`); the jobs keep
running at the provider and the same command picks them up by id.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthtune.config import OpenAIBackendConfig
from synthtune.errors import BackendError, SynthtuneError
from synthtune.llm.backends.base import BackendContext, GenerationRequest, GenerationResult
from synthtune.llm.backends.openai_compat import (
    RETRYABLE_STATUS,
    OpenAIBackend,
    _retry_after,
    _Retryable,
    auth_headers,
    retry_wait,
    timeouts,
)
from synthtune.records import content_hash

if TYPE_CHECKING:
    import httpx

STATE_VERSION = 1
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
ENDPOINTS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}


class BatchPending(SynthtuneError):
    """``batch_max_wait_s`` is spent while batches still run: the run stops resumably (like a
    spent budget); the same command later polls the same batches."""

    exit_code = 3


@dataclass
class _Job:
    """One Batch API job: ``state`` is what its file holds; ``lines`` the input file's lines
    (None for a job loaded from an earlier run, whose file is already uploaded)."""

    key: str
    state: dict[str, Any]
    lines: list[dict[str, Any]] | None
    future: Future[dict[str, GenerationResult]]

    @property
    def ids(self) -> set[str]:
        return set(self.state["custom_ids"])

    @property
    def label(self) -> str:
        return str(self.state.get("batch_id") or self.key)


class OpenAIBatchBackend:
    name = "openai"
    concurrent_calls = True  # the stage's two batch threads each poll their own jobs

    def __init__(
        self,
        config: OpenAIBackendConfig,
        api_key: str | None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.model = config.model
        self._api_key = api_key
        self._sleep = sleep
        self._clock = clock
        # request bodies and reply parsing: exactly those of the synchronous mode
        self._sync = OpenAIBackend(config, None)
        self._context = BackendContext()
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()  # the client, the jobs and their state files
        self._jobs: dict[str, _Job] = {}
        self._loaded = False
        self.retries = 0

    def bind(self, context: BackendContext) -> None:
        """The engine lends the stage's state folder, its log and the progress note."""
        self._context = context

    # ------------------------------------------------------------------ requests
    def _line(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        path, body = self._sync._body(request)
        custom_id = content_hash({"url": path, "body": body, "sample": request.sample}, 32)
        url = ENDPOINTS[self.config.endpoint]
        return custom_id, {"custom_id": custom_id, "method": "POST", "url": url, "body": body}

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        if not requests:
            return []
        ids: list[str] = []
        lines: dict[str, dict[str, Any]] = {}  # one line per distinct request
        for request in requests:
            custom_id, line = self._line(request)
            ids.append(custom_id)
            lines.setdefault(custom_id, line)
        mine, theirs = self._claim(lines)
        if mine:
            self._run(mine)
        results: dict[str, GenerationResult] = {}
        for job in [*mine, *theirs]:
            results.update(job.future.result())
        missing = GenerationResult(None, error="generate: missing from the batch's results")
        return [results.get(custom_id, missing) for custom_id in ids]

    def _claim(self, lines: dict[str, dict[str, Any]]) -> tuple[list[_Job], list[_Job]]:
        """The jobs that answer these requests: saved or running jobs that hold some of them
        (``theirs`` when another thread polls them, else ``mine``), and new jobs for the rest
        (``mine``)."""
        with self._lock:
            self._load_saved()
            wanted = set(lines)
            mine: list[_Job] = []
            theirs: list[_Job] = []
            for job in self._jobs.values():
                if not wanted & job.ids:
                    continue
                wanted -= job.ids
                if job.future.done() or job.state.get("_owner") is not None:
                    theirs.append(job)  # its results are at hand, or another thread polls it
                else:
                    job.state["_owner"] = threading.get_ident()
                    mine.append(job)
            todo = [custom_id for custom_id in lines if custom_id in wanted]
            size = self.config.batch_max_requests
            for start in range(0, len(todo), size):
                chunk = todo[start : start + size]
                key = f"batch-{content_hash(sorted(chunk), 16)}"
                state = {
                    "version": STATE_VERSION,
                    "base_url": self.config.base_url,
                    "model": self.config.model,
                    "endpoint": ENDPOINTS[self.config.endpoint],
                    "custom_ids": chunk,
                    "input_file_id": None,
                    "batch_id": None,
                    "status": None,
                    "_owner": threading.get_ident(),
                }
                job = _Job(key, state, [lines[c] for c in chunk], Future())
                self._jobs[key] = job
                mine.append(job)
            return mine, theirs

    # ------------------------------------------------------------------ state files
    def _state_dir(self) -> Path | None:
        return self._context.state_dir

    def _load_saved(self) -> None:
        """The jobs saved by earlier runs (once per backend; under the lock)."""
        folder = self._state_dir()
        if self._loaded or folder is None:
            return
        self._loaded = True
        for path in sorted(folder.glob("batch-*.json")):
            try:
                state = json.loads(path.read_text(encoding="utf-8"))
                valid = (
                    isinstance(state, dict)
                    and state.get("version") == STATE_VERSION
                    and isinstance(state.get("custom_ids"), list)
                    and isinstance(state.get("input_file_id"), str)
                )
            except (OSError, ValueError):
                valid = False
            if not valid:
                self._context.log(f"[yellow]generate: {path.name} is unreadable: ignored[/]")
                continue
            if (state.get("base_url"), state.get("model")) != (
                self.config.base_url,
                self.config.model,
            ):
                continue  # another server or model: its ids mean nothing here
            state["_owner"] = None
            self._jobs[path.stem] = _Job(path.stem, state, None, Future())

    def _save(self, job: _Job) -> None:
        """Write the job's state atomically (before any polling: a re-run finds the job)."""
        from synthtune.store import atomic_write_json

        folder = self._state_dir()
        if folder is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v for k, v in job.state.items() if not k.startswith("_")}
        atomic_write_json(folder / f"{job.key}.json", state)

    # ------------------------------------------------------------------ HTTP
    def _http(self) -> httpx.Client:
        import httpx

        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    base_url=self.config.base_url.rstrip("/"),
                    headers=auth_headers(self._api_key),
                    timeout=timeouts(self.config),
                )
            return self._client

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One Batch API call, retried on 429/5xx/timeouts/connection errors like the
        synchronous mode's requests; what still fails raises :class:`BackendError` (the jobs
        are saved: a re-run resumes them)."""
        import httpx
        from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

        cfg = self.config
        client = self._http()

        def count(state: RetryCallState) -> None:
            self.retries += 1

        def attempt() -> httpx.Response:
            try:
                response = client.request(method, path, **kwargs)
            except httpx.TimeoutException:
                raise _Retryable(f"timeout after {cfg.timeout_s:g} s") from None
            except httpx.TransportError as exc:
                raise _Retryable(f"connection error: {type(exc).__name__}") from None
            if response.status_code in RETRYABLE_STATUS:
                raise _Retryable(f"HTTP {response.status_code}", _retry_after(response))
            return response

        try:
            response = Retrying(
                stop=stop_after_attempt(cfg.max_retries + 1),
                wait=retry_wait(cfg),
                retry=retry_if_exception_type(_Retryable),
                before_sleep=count,
                sleep=self._sleep,
                reraise=True,
            )(attempt)
        except _Retryable as exc:
            raise BackendError(
                f"generate: Batch API {method} {path}: {exc} (gave up after "
                f"{cfg.max_retries + 1} attempts); the batches saved in the run folder are "
                "resumed when the same command runs again"
            ) from None
        if response.status_code >= 400:
            detail = response.text[:200].replace("\n", " ")
            raise BackendError(
                f"generate: Batch API {method} {path}: HTTP {response.status_code}: {detail}"
            )
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._call(method, path, **kwargs)
        try:
            data = response.json()
        except ValueError:
            raise BackendError(f"generate: Batch API {method} {path}: not a JSON reply") from None
        if not isinstance(data, dict):
            raise BackendError(f"generate: Batch API {method} {path}: not a JSON object")
        return data

    # ------------------------------------------------------------------ one run of jobs
    def _run(self, jobs: list[_Job]) -> None:
        """Submit the new jobs (state saved first), poll every job until it ends, collect
        the results into each job's future. Any failure reaches the threads that wait."""
        try:
            for job in jobs:
                self._submit(job)
            self._poll(jobs)
            for job in jobs:
                job.future.set_result(self._collect(job))
        except BaseException as exc:
            with self._lock:
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                    if job.state.get("status") not in TERMINAL:
                        # a later call (a re-run in the same process) may take it up again
                        self._jobs[job.key] = _Job(
                            job.key, {**job.state, "_owner": None}, job.lines, Future()
                        )
            raise

    def _submit(self, job: _Job) -> None:
        state = job.state
        if state.get("batch_id"):
            self._context.log(
                f"generate: resuming OpenAI batch {state['batch_id']} "
                f"({len(state['custom_ids'])} requests, status {state.get('status')})"
            )
            return
        found = None
        if state.get("input_file_id") is None:
            assert job.lines is not None  # a new job
            data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in job.lines)
            uploaded = self._json(
                "POST",
                "/files",
                files={"file": (f"{job.key}.jsonl", data.encode("utf-8"), "application/jsonl")},
                data={"purpose": "batch"},
            )
            state["input_file_id"] = str(uploaded["id"])
            self._save(job)
        else:  # saved by a run that stopped before it saved the batch id: look it up
            found = self._find_batch(state["input_file_id"])
        batch = found or self._json(
            "POST",
            "/batches",
            json={
                "input_file_id": state["input_file_id"],
                "endpoint": state["endpoint"],
                "completion_window": self.config.batch_completion_window,
                "metadata": {"synthtune_job": job.key},
            },
        )
        self._update(job, batch)
        self._save(job)  # before polling: a crash from here on resumes this batch
        where = f" (state: {self._state_dir()})" if self._state_dir() else ""
        self._context.log(
            f"generate: OpenAI batch {state['batch_id']} "
            f"{'found' if found else 'created'} for {len(state['custom_ids'])} requests, input "
            f"file {state['input_file_id']}{where}"
        )

    def _find_batch(self, input_file_id: str) -> dict[str, Any] | None:
        listing = self._json("GET", "/batches", params={"limit": 100})
        for batch in listing.get("data") or []:
            if isinstance(batch, dict) and batch.get("input_file_id") == input_file_id:
                return batch
        return None

    def _update(self, job: _Job, batch: dict[str, Any]) -> bool:
        """Take the batch object's fields into the job's state; True when its status moved."""
        state = job.state
        before = state.get("status")
        state["batch_id"] = str(batch.get("id") or state.get("batch_id"))
        state["status"] = str(batch.get("status") or "validating")
        for field in ("output_file_id", "error_file_id"):
            if batch.get(field):
                state[field] = str(batch[field])
        counts = batch.get("request_counts")
        if isinstance(counts, dict):
            state["request_counts"] = {
                k: int(counts.get(k) or 0) for k in ("total", "completed", "failed")
            }
        errors = (batch.get("errors") or {}).get("data") if isinstance(batch, dict) else None
        if isinstance(errors, list) and errors:
            state["errors"] = [
                ": ".join(
                    str(e[k]) for k in ("code", "message") if isinstance(e, dict) and e.get(k)
                )
                for e in errors[:5]
            ]
        return state["status"] != before

    def _poll(self, jobs: list[_Job]) -> None:
        cfg = self.config
        started = self._clock()
        waiting = [job for job in jobs if job.state.get("status") not in TERMINAL]
        self._report(jobs)
        while waiting:
            for job in waiting:
                batch = self._json("GET", f"/batches/{job.state['batch_id']}")
                if self._update(job, batch):
                    self._save(job)
                    if job.state["status"] in TERMINAL:
                        self._context.log(
                            f"generate: OpenAI batch {job.label} {job.state['status']}"
                        )
            self._report(jobs)
            waiting = [job for job in waiting if job.state["status"] not in TERMINAL]
            if not waiting:
                break
            if cfg.batch_max_wait_s is not None and self._clock() - started >= cfg.batch_max_wait_s:
                ids = ", ".join(job.label for job in waiting)
                raise BatchPending(
                    f"generate: stopped waiting after batch_max_wait_s={cfg.batch_max_wait_s:g} "
                    f"s; OpenAI batches still running: {ids}. They keep running; run the same "
                    "command later to collect them (nothing is submitted twice)"
                )
            if cfg.batch_poll_s > 0:
                self._sleep(cfg.batch_poll_s)

    def _report(self, jobs: list[_Job]) -> None:
        statuses = Counter(str(job.state.get("status")) for job in jobs)
        total = done = failed = 0
        for job in jobs:
            counts = job.state.get("request_counts") or {}
            total += counts.get("total") or len(job.state["custom_ids"])
            done += counts.get("completed", 0)
            failed += counts.get("failed", 0)
        which = jobs[0].label if len(jobs) == 1 else f"{len(jobs)} batches"
        status = ", ".join(f"{n} {s}" if len(jobs) > 1 else s for s, n in sorted(statuses.items()))
        self._context.status(f"{which} {status}: {done}/{total} done, {failed} failed")

    # ------------------------------------------------------------------ results
    def _lines(self, file_id: str | None) -> list[dict[str, Any]]:
        if not file_id:
            return []
        text = self._call("GET", f"/files/{file_id}/content").text
        out = []
        for raw in text.splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue  # its request ends "missing", with the batch's reason
            if isinstance(line, dict) and isinstance(line.get("custom_id"), str):
                out.append(line)
        return out

    def _result(self, line: dict[str, Any]) -> GenerationResult:
        import httpx

        error = line.get("error")
        if isinstance(error, dict) and (error.get("code") or error.get("message")):
            parts = [str(error[k]) for k in ("code", "message") if error.get(k)]
            return GenerationResult(None, error=f"generate: batch error {': '.join(parts)}")
        response = line.get("response") or {}
        status = int(response.get("status_code") or 0)
        body = response.get("body")
        if status != 200:
            detail = json.dumps(body, ensure_ascii=False)[:200] if body is not None else ""
            return GenerationResult(None, error=f"generate: batch HTTP {status}: {detail}")
        try:
            return self._sync._parse(httpx.Response(200, json=body))
        except _Retryable as exc:
            return GenerationResult(None, error=f"generate: batch reply: {exc}")

    def _collect(self, job: _Job) -> dict[str, GenerationResult]:
        state = job.state
        results: dict[str, GenerationResult] = {}
        ids = job.ids
        for file_id in (state.get("output_file_id"), state.get("error_file_id")):
            for line in self._lines(file_id):
                if line["custom_id"] in ids and line["custom_id"] not in results:
                    results[line["custom_id"]] = self._result(line)
        status = state.get("status")
        if status == "completed":
            reason = "missing from the batch's output and error files"
        elif status == "failed":
            why = "; ".join(state.get("errors") or []) or "no reason given"
            reason = f"batch failed: {why}"
        else:
            reason = f"batch {status} before this request ran"
        missing = GenerationResult(None, error=f"generate: {reason} ({job.label})")
        for custom_id in state["custom_ids"]:
            results.setdefault(custom_id, missing)
        state["collected"] = True
        self._save(job)
        return results

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
