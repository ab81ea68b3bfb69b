"""The generation engine: every model call of every strategy goes through ``call``.

It owns what strategies should not repeat: the content-addressed cache, creating the backend
lazily (a fully cached run never loads a model), token and cost accounting with per-model
prices, and the budget (``budget_usd`` / ``max_total_tokens``). When the budget is spent it
raises :class:`BudgetExhausted` *before* sending more requests; everything flushed so far stays,
paid replies of the interrupted batch are in the cache, so raising the budget and running
again resumes without paying twice.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from synthtune.config import GenerateConfig, Price
from synthtune.errors import SynthtuneError
from synthtune.executor import Executor
from synthtune.llm.backends.base import (
    Backend,
    BackendContext,
    GenerationRequest,
    GenerationResult,
    create_backend,
)
from synthtune.llm.cache import ResponseCache, backend_dump, cache_key
from synthtune.llm.remote import RemoteBackend, runs_on_workers


class BudgetExhausted(SynthtuneError):
    """The configured budget is spent; the run stops in a resumable state."""

    exit_code = 3


@dataclass
class Usage:
    requests: int = 0
    cached: int = 0
    failed: int = 0
    retried: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    by_template: dict[str, int] = field(default_factory=dict)
    retry_reasons: Counter[str] = field(default_factory=Counter)
    pauses: int = 0  # outages the backend paused every request for (circuit breaker)
    paused_s: float = 0.0

    def add(self, result: GenerationResult) -> None:
        self.requests += 1
        self.cached += result.cached
        self.failed += result.error is not None
        self.retried += max(0, result.attempts - 1)
        self.retry_reasons.update(result.retry_reasons)
        if not result.cached:
            self.tokens_in += result.tokens_in
            self.tokens_out += result.tokens_out
            self.cost_usd += result.cost_usd

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "cached": self.cached,
            "failed": self.failed,
            "retried": self.retried,
            "retry_reasons": dict(self.retry_reasons.most_common()),
            "pauses": self.pauses,
            "paused_s": round(self.paused_s, 1),
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_usd": round(self.cost_usd, 6),
        }


def cost_of(price: Price | None, tokens_in: int, tokens_out: int) -> float:
    if price is None:
        return 0.0
    return (tokens_in * price.input_per_1m + tokens_out * price.output_per_1m) / 1e6


def batch_mode(config: GenerateConfig) -> bool:
    """The backend sends through a batch API (the openai backend's ``mode: batch``)."""
    return getattr(config.backend, "mode", None) == "batch"


def model_name(config: GenerateConfig) -> str:
    """The backend's model (its type for a backend without one): the key of its price."""
    return str(getattr(config.backend, "model", config.backend.type))


def price_of(config: GenerateConfig, batch: bool | None = None) -> Price | None:
    """The price of the backend's model from ``generate.prices``; the Batch API price in
    batch mode (``batch``: None = the backend's mode), see ``Price.batch``."""
    price = config.prices.get(model_name(config))
    if price is not None and (batch_mode(config) if batch is None else batch):
        return price.batch()
    return price


class GenerationEngine:
    def __init__(
        self,
        config: GenerateConfig,
        resolve_model: Callable[[str], str],
        cache: ResponseCache | None,
        spent: Usage | None = None,
        state_dir: Path | None = None,
        log: Callable[[str], None] | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.config = config
        self.executor = executor  # a local model's calls go to its workers (llm.remote)
        self.resolve_model = resolve_model
        self.cache = cache
        self.usage = spent or Usage()
        self._backend_dump = backend_dump(config.backend)
        self.price = price_of(config)
        self._backend: Backend | None = None
        self.listeners: list[Callable[[Usage], None]] = []
        # a backend's status while it waits (a batch being polled): the progress bar's note
        self.status_listeners: list[Callable[[str], None]] = []
        self._context = BackendContext(
            state_dir=state_dir, log=log or (lambda text: None), status=self._status
        )
        # the generate stage may call from two batch threads: a backend without
        # ``concurrent_calls`` (a local model) is called by one at a time, and the usage is
        # counted under a lock
        self._call_lock = threading.Lock()
        self._create_lock = threading.Lock()
        self._usage_lock = threading.Lock()

    @property
    def backend_name(self) -> str:
        return self.config.backend.type

    @property
    def model_name(self) -> str:
        return model_name(self.config)

    def backend(self) -> Backend:
        with self._create_lock:
            if self._backend is None:
                backend: Any
                if runs_on_workers(self.config.backend, self.executor):
                    assert self.executor is not None
                    backend = RemoteBackend(self.config.backend, self.resolve_model, self.executor)
                else:
                    backend = create_backend(self.config.backend, self.resolve_model)
                bind = getattr(backend, "bind", None)
                if bind is not None:
                    bind(self._context)
                self._backend = backend
        return self._backend

    def _status(self, text: str) -> None:
        for listener in self.status_listeners:
            listener(text)

    def _send(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        backend = self.backend()
        try:
            if getattr(backend, "concurrent_calls", False):
                return backend.generate(requests)
            with self._call_lock:
                return backend.generate(requests)
        finally:
            self._count_pauses()

    def _count_pauses(self) -> None:
        """The backend's pauses (the openai backend's circuit breaker) into the usage."""
        stats = getattr(self._backend, "pause_stats", None)
        if stats is not None:
            pauses, seconds = stats()
            with self._usage_lock:
                self.usage.pauses, self.usage.paused_s = pauses, seconds

    def close(self) -> None:
        """Release the backend's connections (backends with a ``close``)."""
        self._count_pauses()
        close = getattr(self._backend, "close", None)
        if close is not None:
            close()

    def check_budget(self) -> None:
        cfg, used = self.config, self.usage
        if cfg.budget_usd is not None and used.cost_usd >= cfg.budget_usd:
            raise BudgetExhausted(
                f"budget reached: spent ${used.cost_usd:.4f} of generate.budget_usd "
                f"${cfg.budget_usd:g}; raise it and run the same command to continue"
            )
        total = used.tokens_in + used.tokens_out
        if cfg.max_total_tokens is not None and total >= cfg.max_total_tokens:
            raise BudgetExhausted(
                f"token cap reached: {total} of generate.max_total_tokens "
                f"{cfg.max_total_tokens}; raise it and run the same command to continue"
            )

    def call(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Replies in request order; cached ones are not sent. Failures come back as results."""
        if not requests:
            return []
        self.check_budget()
        keys = [cache_key(self._backend_dump, r.messages, r.sample) for r in requests]
        found = self.cache.get_many(keys) if self.cache else {}
        results: dict[str, GenerationResult] = {
            k: replace(r, cached=True) for k, r in found.items()
        }
        misses = [(k, r) for k, r in zip(keys, requests, strict=True) if k not in results]
        if misses:
            fresh = self._send([r for _, r in misses])
            priced = [
                replace(res, cost_usd=cost_of(self.price, res.tokens_in, res.tokens_out))
                for res in fresh
            ]
            if self.cache:
                self.cache.put_many([(k, res) for (k, _), res in zip(misses, priced, strict=True)])
            results.update({k: res for (k, _), res in zip(misses, priced, strict=True)})
        ordered = [results[k] for k in keys]
        self.account(ordered)
        return ordered

    def account(self, results: list[GenerationResult]) -> None:
        """Count finished requests (also those a strategy sends to a non-text backend, such
        as images) in the usage and tell the listeners (the progress bar)."""
        with self._usage_lock:
            for result in results:
                self.usage.add(result)
            for listener in self.listeners:
                listener(self.usage)
