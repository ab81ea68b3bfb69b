"""The OpenAI-compatible HTTP app: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``.

Every error is a JSON body in OpenAI's shape with a 4xx status a client can act on: 401 for a
missing or wrong key, 404 for an unknown model, 400 for bad parameters (including a prompt over
``max_prompt_tokens`` or ``max_tokens`` over the cap), 429 when ``max_concurrent`` requests are
already queued or running (the ``openai`` backend and the official client back off and retry).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from synthtune.http_limits import BodyLimit
from synthtune.llm.backends.transformers import render_chat
from synthtune.loopback import ThreadedServer
from synthtune.serve.generation import Outcome, SamplingParams
from synthtune.serve.models import ServedModels
from synthtune.serve.protocol import (
    ChatRequest,
    CompletionRequest,
    Envelope,
    _Request,
    error_body,
    usage,
)


class ServeLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(256, gt=0, description="Cap on max_tokens; also its default.")
    max_prompt_tokens: int = Field(2048, gt=0, description="Longest prompt accepted, in tokens.")
    max_concurrent: int = Field(
        64, gt=0, description="Requests queued or running at most; more get HTTP 429."
    )
    max_batch: int = Field(
        16, gt=0, description="Queued requests generated together at most (1 = no batching)."
    )
    max_body_bytes: int = Field(
        1_000_000, gt=0, description="Largest request body accepted; more get HTTP 413."
    )


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        kind: str,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.body = status, error_body(message, kind, param, code)


class _Admission:
    """Counts requests in the building; the event loop is the only thread that touches it."""

    def __init__(self, limit: int) -> None:
        self.limit, self.active = limit, 0

    def enter(self) -> None:
        if self.active >= self.limit:
            raise ApiError(
                429, f"server busy: {self.limit} requests in progress", "rate_limit_error"
            )
        self.active += 1

    def leave(self) -> None:
        self.active -= 1


def _sse(body: Any) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"Retry-After": "1"} if exc.status == 429 else None
        return JSONResponse(exc.body, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"] if p != "body") or None
        message = f"{param}: {first['msg']}" if param else str(first["msg"])
        return JSONResponse(error_body(message, "invalid_request_error", param), 400)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        # the client gets the error's type only; details stay in the server log
        logging.getLogger("synthtune.serve").exception("request failed")
        return JSONResponse(
            error_body(f"internal error: {type(exc).__name__}", "server_error"), 500
        )


def create_app(
    models: ServedModels, api_key: str | None = None, limits: ServeLimits | None = None
) -> FastAPI:
    """The app serving ``models``; requests need ``Bearer <api_key>`` when a key is given."""
    limits = limits or ServeLimits()
    ready = threading.Event()
    admission = _Admission(limits.max_concurrent)
    generator = models.generator
    generator.max_batch = limits.max_batch

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ready.set()
        yield
        ready.clear()

    # with a key, the API description is behind it too (/openapi.json) and the interactive
    # /docs page, which cannot send the key, is off
    keyed = api_key is not None
    app = FastAPI(
        title="synthtune serve",
        lifespan=lifespan,
        openapi_url=None if keyed else "/openapi.json",
        docs_url=None if keyed else "/docs",
        redoc_url=None,
    )
    app.state.ready = ready
    app.add_middleware(
        BodyLimit,
        max_bytes=limits.max_body_bytes,
        body=lambda n: error_body(
            f"request body over {n:,} bytes", "invalid_request_error", None, "body_too_large"
        ),
    )
    _install_errors(app)

    def authorised(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            token.encode(), api_key.encode()
        ):
            raise ApiError(
                401, "missing or wrong API key", "invalid_request_error", None, "invalid_api_key"
            )

    def checked(body: _Request, prompt: str, param: str) -> SamplingParams:
        if body.model not in models:
            raise ApiError(
                404,
                f"model {body.model!r} not found; served: {', '.join(models.names)}",
                "invalid_request_error",
                "model",
                "model_not_found",
            )
        if body.max_tokens is not None and body.max_tokens > limits.max_tokens:
            raise ApiError(
                400,
                f"max_tokens {body.max_tokens} is over this server's cap {limits.max_tokens}",
                "invalid_request_error",
                "max_tokens",
            )
        n_prompt = generator.count_tokens(prompt)
        if n_prompt > limits.max_prompt_tokens:
            raise ApiError(
                400,
                f"prompt has {n_prompt} tokens, over this server's limit "
                f"{limits.max_prompt_tokens}",
                "invalid_request_error",
                param,
                "context_length_exceeded",
            )
        return SamplingParams(
            max_tokens=body.max_tokens or limits.max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            stop=body.stops(),
            seed=body.seed,
        )

    async def complete(body: _Request, prompt: str, param: str, prefix: str = "") -> Any:
        params = checked(body, prompt, param)
        envelope = Envelope(isinstance(body, ChatRequest), body.model)
        admission.enter()
        outcome = Outcome()
        deltas = generator.stream(body.model, prompt, params, outcome)
        if body.stream:
            return StreamingResponse(
                _events(envelope, deltas, outcome, prefix, body.include_usage()),
                media_type="text/event-stream",
            )
        try:
            text = prefix + "".join([d async for d in deltas])
        finally:
            admission.leave()
        counts = usage(outcome.prompt_tokens, outcome.completion_tokens)
        return envelope.full(text, outcome.finish_reason, counts)

    async def _events(
        envelope: Envelope,
        deltas: AsyncGenerator[str, None],
        outcome: Outcome,
        prefix: str,
        include_usage: bool,
    ) -> AsyncIterator[str]:
        try:
            yield _sse(envelope.first_chunk() if envelope.chat else envelope.chunk(prefix))
            async for delta in deltas:
                yield _sse(envelope.chunk(delta))
            yield _sse(envelope.chunk(None, outcome.finish_reason))
            if include_usage:
                counts = usage(outcome.prompt_tokens, outcome.completion_tokens)
                yield _sse(envelope.usage_chunk(counts))
            yield "data: [DONE]\n\n"
        finally:
            await deltas.aclose()
            admission.leave()

    if keyed:

        @app.get("/openapi.json", dependencies=[Depends(authorised)], include_in_schema=False)
        def openapi() -> dict[str, Any]:
            return app.openapi()

    @app.get("/v1/models", dependencies=[Depends(authorised)])
    def list_models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": models.created, "owned_by": "synthtune"}
                for name in models.names
            ],
        }

    @app.post("/v1/chat/completions", dependencies=[Depends(authorised)])
    async def chat_completions(body: ChatRequest) -> Any:
        return await complete(body, render_chat(generator.tokenizer, body.chat()), "messages")

    @app.post("/v1/completions", dependencies=[Depends(authorised)])
    async def completions(body: CompletionRequest) -> Any:
        return await complete(body, body.text(), "prompt", body.text() if body.echo else "")

    return app


class ServeServer(ThreadedServer):
    """uvicorn on a socket bound before start; ``__enter__`` returns once the app is ready."""

    path = "/v1"

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(app, host, port, backlog=256, lifespan="on")

    def wait_ready(self) -> None:
        if not self.app.state.ready.wait(timeout=60):
            raise RuntimeError("server did not start within 60 s")
