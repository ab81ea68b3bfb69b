"""Token-by-token generation in a worker thread, as text deltas for an asyncio consumer.

One code path serves both the streamed and the plain reply: a plain reply is the join of the
deltas, so streamed chunks always add up to the non-streamed text. ``model.generate`` runs on
a single worker thread (the event loop stays free to accept and answer other requests), and
requests queue in arrival order; generation is serialised because one CPU generation already
uses every core, and because selecting a LoRA adapter is a change to the shared model.

Decoding is incremental: the generated ids are decoded as a whole after each new token and the
new suffix is sent, except a tail that is still an incomplete UTF-8 character or could be the
start of a stop string; that tail is held back until it is decided.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
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


class _QueueStreamer:
    """A transformers streamer that hands each new token id to an asyncio queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]) -> None:
        self.loop, self.queue = loop, queue
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() first puts the prompt ids
            self.prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self.loop.call_soon_threadsafe(self.queue.put_nowait, int(token))

    def end(self) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, _END)


class _Cancelled:
    """Stopping criterion: ends generation when the request is done (stop string, client gone)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)


class Generator:
    """Runs one causal LM's ``generate`` on a single worker thread.

    ``select`` gives the context in which a named model is active (e.g. a LoRA adapter);
    it is entered on the worker thread, so switching adapters never races a generation.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        select: Callable[[str], AbstractContextManager[Any]],
    ) -> None:
        self.model, self.tokenizer, self.select = model, tokenizer, select
        self.device = next(model.parameters()).device
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synthtune-gen")

    def count_tokens(self, prompt: str) -> int:
        return len(self.tokenizer(prompt)["input_ids"])

    def _run(
        self,
        name: str,
        prompt: str,
        params: SamplingParams,
        streamer: _QueueStreamer,
        cancel: threading.Event,
    ) -> None:
        try:
            if cancel.is_set():
                return
            from transformers import StoppingCriteriaList

            enc = self.tokenizer(prompt, return_tensors="pt").to(self.device)
            sampling = params.temperature > 0
            if params.seed is not None:
                torch.manual_seed(params.seed)
            with self.select(name), torch.inference_mode():
                self.model.generate(
                    **enc,
                    streamer=streamer,
                    max_new_tokens=params.max_tokens,
                    do_sample=sampling,
                    temperature=params.temperature if sampling else None,
                    top_p=params.top_p if sampling else None,
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.tokenizer.eos_token_id,
                    stopping_criteria=StoppingCriteriaList([_Cancelled(cancel)]),
                )
        finally:
            streamer.end()

    async def stream(
        self, name: str, prompt: str, params: SamplingParams, outcome: Outcome
    ) -> AsyncGenerator[str, None]:
        """Text deltas of the reply to ``prompt``; ``outcome`` holds usage and finish reason.

        Closing the iterator early (client gone) stops the generation at the next token.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()
        outcome.prompt_tokens = self.count_tokens(prompt)
        eos = self.tokenizer.eos_token_id
        ids: list[int] = []
        sent = ""
        job = loop.run_in_executor(
            self.executor, self._run, name, prompt, params, _QueueStreamer(loop, queue), cancel
        )
        try:
            while (token := await queue.get()) is not _END:
                if cancel.is_set():
                    continue  # drain what generate() emits before it sees the cancel
                ids.append(token)
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                text, stopped, hold = split_at_stop(text, params.stop)
                if stopped:
                    outcome.finish_reason = "stop"
                    cancel.set()
                elif token == eos:
                    outcome.finish_reason = "stop"
                ready = text if stopped else text[: len(text) - hold].rstrip("\ufffd")
                if ready.startswith(sent) and len(ready) > len(sent):
                    yield ready[len(sent) :]
                    sent = ready
            outcome.completion_tokens = len(ids)
            await job  # re-raises an error of the worker
            final = split_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), params.stop)
            if final[0].startswith(sent) and len(final[0]) > len(sent):
                yield final[0][len(sent) :]
        finally:
            cancel.set()

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
