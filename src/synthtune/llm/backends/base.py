"""The backend contract: turn a batch of chat requests into replies.

A backend implements ``generate`` only; the stage owns ordering, sharding and resume. A
failure of one request is returned as a result with ``error`` set, never raised, so one bad
reply cannot sink its batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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


def _silent(text: str) -> None:
    return None


@dataclass(frozen=True)
class BackendContext:
    """What the engine lends a backend that keeps state across runs or waits a long time
    (the openai backend's Batch API mode); such a backend has ``bind(context)``, called once
    after it is created. ``state_dir``: a folder in the stage's directory that survives a
    crash (None: nowhere to keep state, e.g. the quality judge); ``log``: a line the user
    must see (a batch id); ``status``: the progress bar's note while waiting."""

    state_dir: Path | None = None
    log: Callable[[str], None] = _silent
    status: Callable[[str], None] = _silent


class Backend(Protocol):
    name: str
    model: str

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]: ...


# A factory takes the backend's config section and a model resolver (name -> local path).
BackendFactory = Callable[[Any, Callable[[str], str]], Backend]
BACKENDS = plugins.BACKENDS  # name -> BackendFactory (plugins.register_backend)


def create_backend(config: Any, resolve_model: Callable[[str], str]) -> Backend:
    return BACKENDS.get(config.type)(config, resolve_model)
