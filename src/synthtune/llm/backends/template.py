"""The ``template`` backend: the reply is the template's rendered ``response``.

No model at all: it makes the offline demo and tests fast and exactly reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from synthtune import plugins
from synthtune.config.generate import TemplateBackendConfig
from synthtune.llm.backends.base import (
    GenerationRequest,
    GenerationResult,
)


class TemplateBackend:
    name = "template"
    model = "template"

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return [
            GenerationResult(text=r.reference)
            if r.reference is not None
            else GenerationResult(text=None, error="template has no response to render")
            for r in requests
        ]


def _create(config: Any, resolve_model: Callable[[str], str]) -> TemplateBackend:
    return TemplateBackend()


plugins.register_backend("template", _create, config=TemplateBackendConfig)
