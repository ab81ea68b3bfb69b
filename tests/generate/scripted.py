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


def install(monkeypatch, backend: ScriptedBackend, model: str | None = None) -> ScriptedBackend:
    """Serve ``backend`` for every engine call, or only for backend configs of ``model``."""
    import synthtune.llm.engine as engine

    original = engine.create_backend

    def create(cfg, resolve):
        if model is None or getattr(cfg, "model", None) == model:
            return backend
        return original(cfg, resolve)

    monkeypatch.setattr(engine, "create_backend", create)
    return backend
