"""The backend contract: turn a batch of chat requests into replies.

A backend implements ``generate`` only; the stage owns ordering, sharding and resume. A
failure of one request is returned as a result with ``error`` set, never raised, so one bad
reply cannot sink its batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from synthtune import plugins


@dataclass(frozen=True)
class GenerationRequest:
    key: str
    messages: list[dict[str, str]]
    reference: str | None = None  # the rendered response template, if any
    sample: int = 0  # which sample of these messages (distinct samples at temperature > 0)


@dataclass(frozen=True)
class GenerationResult:
    text: str | None
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    attempts: int = 1
    retry_reasons: tuple[str, ...] = ()  # why each retry happened (HTTP 429, timeout, ...)
    cached: bool = False
    cost_usd: float = 0.0


class Backend(Protocol):
    name: str
    model: str

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]: ...


# A factory takes the backend's config section and a model resolver (name -> local path).
BackendFactory = Callable[[Any, Callable[[str], str]], Backend]
BACKENDS = plugins.BACKENDS  # name -> BackendFactory (plugins.register_backend)


def create_backend(config: Any, resolve_model: Callable[[str], str]) -> Backend:
    return BACKENDS.get(config.type)(config, resolve_model)
