"""A compute-bound backend (a local model: ``transformers``, in-process ``vllm``) run on the
executor's workers, each holding its own copy of the model.

Only the model calls move: the engine stays on the driver, so the response cache, budgets,
usage, retry accounting and the generate stage's shards and resume work exactly as locally.
Each engine call is cut into one slice per worker; every worker builds the backend once
(``BackendFactory``: the model loaded once per worker, kept between calls) and generates its
slice; results come back in request order. An HTTP backend (``openai``) is I/O-bound: one
driver keeps thousands of requests in flight under one adaptive limit, and spreads them over
several servers with ``more_base_urls``, so it stays on the driver.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from synthtune.executor import Executor, flatten, shards
from synthtune.llm.backends.base import (
    BACKENDS,
    GenerationRequest,
    GenerationResult,
    create_backend,
)

# backends whose work is computation on this machine, worth spreading over workers
ON_WORKERS = frozenset({"transformers", "vllm"})


@dataclass(frozen=True)
class BackendFactory:
    """Builds ``generate.backend`` on a worker; hashable (the config as JSON) so a worker
    keeps the backend it built for every later call with an equal factory."""

    backend_type: str
    config_json: str
    model_path: str

    def __call__(self) -> Callable[[list[GenerationRequest]], list[GenerationResult]]:
        import synthtune.llm.backends  # noqa: F401  (registers the built-in backends)

        config = BACKENDS.config(self.backend_type).model_validate_json(self.config_json)
        return create_backend(config, lambda _name: self.model_path).generate


class RemoteBackend:
    """``generate`` spread over ``executor``'s workers (module docstring)."""

    concurrent_calls = False  # the workers are busy with one call at a time

    def __init__(self, config: Any, resolve_model: Callable[[str], str], executor: Executor):
        self.name = config.type
        self.model = getattr(config, "model", config.type)
        self.executor = executor
        self.factory = BackendFactory(
            config.type, config.model_dump_json(), resolve_model(config.model)
        )

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        if not requests:
            return []
        size = -(-len(requests) // self.executor.workers)  # one slice per worker
        return flatten(self.executor.map_workers(self.factory, shards(requests, size)))


def runs_on_workers(config: Any, executor: Executor | None) -> bool:
    """Whether ``generate.backend`` goes to the executor's workers."""
    return executor is not None and executor.name != "local" and config.type in ON_WORKERS
