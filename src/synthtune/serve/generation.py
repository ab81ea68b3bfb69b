"""Token-by-token generation in a worker thread, as text deltas for an asyncio consumer.

One code path serves both the streamed and the plain reply: a plain reply is the join of the
deltas, so streamed chunks always add up to the non-streamed text. ``model.generate`` runs on
a single worker thread (the event loop stays free to accept and answer other requests), one
call at a time: one CPU generation already uses every core, and selecting a LoRA adapter is a
change to the shared model.

Requests that arrive while the worker is busy wait in a queue; when it is free, the oldest
request and every queued one with the same model and sampling settings (up to ``max_batch``)
run as one left-padded batch. Nothing waits on purpose for a batch to fill: batches form only
under load. Each row ends on its own (EOS, its ``max_tokens``, a stop string, a client gone)
and its reply completes at once, without waiting for the rest of the batch. A request with a
``seed`` runs alone, so its sample does not depend on its neighbours.

Decoding is incremental: the generated ids are decoded as a whole after each new token and the
new suffix is sent, except a tail that is still an incomplete UTF-8 character or could be the
start of a stop string; that tail is held back until it is decided.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch

_END = object()


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class Outcome:
    """Filled while a reply is produced; complete once the delta stream ends."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "length"


def split_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool, int]:
    """(text before the first stop string, whether one occurred, length of the tail to hold).

    The held tail is the longest suffix that is a proper prefix of some stop string: it may
    still become a stop, so it must not be sent yet.
    """
    cut = min((at for at in (text.find(s) for s in stops) if at >= 0), default=-1)
    if cut >= 0:
        return text[:cut], True, 0
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), hold, -1):
            if text.endswith(stop[:k]):
                hold = k
                break
    return text, False, hold


@dataclass
class _Job:
    """One request inside the generator: its prompt, settings and token queue."""

    name: str
    prompt: str
    params: SamplingParams
    queue: asyncio.Queue[Any]
    loop: asyncio.AbstractEventLoop
    cancel: threading.Event = field(default_factory=threading.Event)
    produced: int = 0
    finished: bool = False

    def batch_key(self) -> tuple[Any, ...] | None:
        if self.params.seed is not None:
            return None
        return (self.name, self.params.temperature > 0, self.params.temperature, self.params.top_p)

    def send(self, item: Any) -> None:
        """Hand a token, an error or the end to the request (from any thread)."""
        # a closed event loop means nobody is waiting for this reply any more
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


class _BatchStreamer:
    """A transformers streamer that hands each row's new token to that request's queue."""

    def __init__(self, jobs: list[_Job], eos: int) -> None:
        self.jobs, self.eos = jobs, eos
        self.prompt_seen = False

    @staticmethod
    def _finish(job: _Job) -> None:
        job.finished = True
        job.cancel.set()  # the stopping criterion then ends this row
        job.send(_END)

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() first puts the prompt ids
            self.prompt_seen = True
            return
        for job, token in zip(self.jobs, value.reshape(-1).tolist(), strict=True):
            if job.finished:
                continue  # rows that ended get padding
            if job.cancel.is_set():
                self._finish(job)
                continue
            job.produced += 1
            job.send(int(token))
            if token == self.eos or job.produced >= job.params.max_tokens:
                self._finish(job)

    def end(self) -> None:
        for job in self.jobs:
            if not job.finished:
                self._finish(job)


class _RowsCancelled:
    """Stopping criterion: a row ends when its request is done (see ``_BatchStreamer``)."""

    def __init__(self, jobs: list[_Job]) -> None:
        self.jobs = jobs

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        return torch.tensor([job.cancel.is_set() for job in self.jobs], dtype=torch.bool)


class Generator:
    """Runs one causal LM's ``generate`` on a single worker thread, batching queued requests.

    ``select`` gives the context in which a named model is active (e.g. a LoRA adapter);
    it is entered on the worker thread, so switching adapters never races a generation.
    ``max_batch`` 1 turns batching off.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        select: Callable[[str], AbstractContextManager[Any]],
        max_batch: int = 16,
    ) -> None:
        self.model, self.tokenizer, self.select = model, tokenizer, select
        self.tokenizer.padding_side = "left"  # decoder-only: rows continue at the right edge
        self.max_batch = max_batch
        self.device = next(model.parameters()).device
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synthtune-gen")
        self.lock = threading.Lock()  # guards pending and busy (event loop vs worker)
        self.pending: list[_Job] = []
        self.busy = False
        self.batch_sizes: list[int] = []  # one entry per generate() call, for tests and benches

    def count_tokens(self, prompt: str) -> int:
        return len(self.tokenizer(prompt)["input_ids"])

    def _generate(self, jobs: list[_Job]) -> None:
        from transformers import StoppingCriteriaList

        streamer = _BatchStreamer(jobs, self.tokenizer.eos_token_id)
        try:
            params = jobs[0].params
            enc = self.tokenizer([j.prompt for j in jobs], return_tensors="pt", padding=True)
            sampling = params.temperature > 0
            if params.seed is not None:
                torch.manual_seed(params.seed)
            with self.select(jobs[0].name), torch.inference_mode():
                self.model.generate(
                    **enc.to(self.device),
                    streamer=streamer,
                    max_new_tokens=max(j.params.max_tokens for j in jobs),
                    do_sample=sampling,
                    temperature=params.temperature if sampling else None,
                    top_p=params.top_p if sampling else None,
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.tokenizer.eos_token_id,
                    stopping_criteria=StoppingCriteriaList([_RowsCancelled(jobs)]),
                )
        except Exception as exc:
            for job in jobs:
                if not job.finished:
                    job.send(exc)
        finally:
            streamer.end()

    def _take_batch(self) -> list[_Job]:
        head = self.pending.pop(0)
        key = head.batch_key()
        batch = [head]
        if key is not None:
            for job in list(self.pending):
                if len(batch) >= self.max_batch:
                    break
                if job.batch_key() == key:
                    batch.append(job)
                    self.pending.remove(job)
        return batch

    def _drain(self) -> None:
        """On the worker: generate batches until no request waits."""
        while True:
            with self.lock:
                self.pending = [j for j in self.pending if not j.cancel.is_set()]
                if not self.pending:
                    self.busy = False
                    return
                jobs = self._take_batch()
                self.batch_sizes.append(len(jobs))
            self._generate(jobs)

    def _submit(self, job: _Job) -> None:
        with self.lock:
            self.pending.append(job)
            if self.busy:
                return  # the running drain picks it up
            self.busy = True
        self.executor.submit(self._drain)

    async def stream(
        self, name: str, prompt: str, params: SamplingParams, outcome: Outcome
    ) -> AsyncGenerator[str, None]:
        """Text deltas of the reply to ``prompt``; ``outcome`` holds usage and finish reason.

        Closing the iterator early (client gone) stops the generation at the next token.
        """
        job = _Job(name, prompt, params, asyncio.Queue(), asyncio.get_running_loop())
        outcome.prompt_tokens = self.count_tokens(prompt)
        eos = self.tokenizer.eos_token_id
        ids: list[int] = []
        sent = ""
        self._submit(job)
        try:
            while (token := await job.queue.get()) is not _END:
                if isinstance(token, BaseException):
                    raise token
                if outcome.finish_reason == "stop":
                    continue  # drain what generate() emits before it sees the stop
                ids.append(token)
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                text, stopped, hold = split_at_stop(text, params.stop)
                if stopped:
                    outcome.finish_reason = "stop"
                    job.cancel.set()
                elif token == eos:
                    outcome.finish_reason = "stop"
                ready = text if stopped else text[: len(text) - hold].rstrip("\ufffd")
                if ready.startswith(sent) and len(ready) > len(sent):
                    yield ready[len(sent) :]
                    sent = ready
            outcome.completion_tokens = len(ids)
            final = split_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), params.stop)
            if final[0].startswith(sent) and len(final[0]) > len(sent):
                yield final[0][len(sent) :]
        finally:
            job.cancel.set()

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
