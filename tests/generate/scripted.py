"""A scripted backend for strategy tests: a function maps each request to its reply."""

from collections.abc import Callable

from synthtune.llm.backends.base import GenerationRequest, GenerationResult


class ScriptedBackend:
    name = "scripted"
    model = "scripted"

    def __init__(self, reply: Callable[[GenerationRequest], str | None], tokens=(10, 5)):
        self.reply = reply
        self.tokens = tokens
        self.calls: list[GenerationRequest] = []

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        out = []
        for request in requests:
            self.calls.append(request)
            text = self.reply(request)
            out.append(
                GenerationResult(text=text, tokens_in=self.tokens[0], tokens_out=self.tokens[1])
                if text is not None
                else GenerationResult(text=None, error="scripted failure")
            )
        return out


def install(monkeypatch, backend: ScriptedBackend) -> ScriptedBackend:
    monkeypatch.setattr("synthtune.llm.engine.create_backend", lambda cfg, resolve: backend)
    return backend
