"""``type: echo``: the reply is the template's rendered response with a fixed suffix."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from synthtune.config.generate import SectionConfig
from synthtune.llm.backends.base import GenerationRequest, GenerationResult
from synthtune.plugins import register_backend


class EchoConfig(SectionConfig):
    type: Literal["echo"]
    suffix: str = Field("", max_length=200, description="Appended to every reply.")


class EchoBackend:
    name = "echo"
    model = "echo"

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return [
            GenerationResult(text=f"{r.reference or r.messages[-1]['content']}{self.suffix}")
            for r in requests
        ]


def create(config: Any, resolve_model: Any) -> EchoBackend:
    return EchoBackend(config.suffix)


register_backend("echo", create, config=EchoConfig)
