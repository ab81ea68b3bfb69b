"""A request-body size limit for the two HTTP apps (serve, review), as ASGI middleware.

Starlette and FastAPI read a request body whole, whatever its size, and uvicorn has no body
limit of its own; without this a client could make either app buffer gigabytes. Both the
declared ``Content-Length`` and the bytes actually received count (a chunked body has no
length): the body is read here up to the limit and handed on, and the refusal is a 413 in
the app's own error shape.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """``app.add_middleware(BodyLimit, max_bytes=..., body=lambda limit: {...})``: requests
    whose body is over ``max_bytes`` get HTTP 413 with the JSON ``body(max_bytes)``."""

    def __init__(self, app: ASGIApp, max_bytes: int, body: Callable[[int], dict[str, Any]]) -> None:
        self.app, self.max_bytes, self.body = app, max_bytes, body

    async def _refuse(self, send: Send) -> None:
        payload = json.dumps(self.body(self.max_bytes)).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        # Read the body up to the limit before the app sees it: FastAPI turns any error
        # raised while it reads a body into a 400, so a limit inside receive() would be lost.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            chunks.append(message.get("body", b""))
            received += len(chunks[-1])
            if received > self.max_bytes:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # e.g. a streaming response waiting for a disconnect

        await self.app(scope, replay, send)
