"""uvicorn in a background thread on a socket bound before start (review app, serve).

Binding first means port 0 gives a free port the caller can read at once (tests, the CLI's
announcement) and a busy port fails in the constructor, not later in a thread.
"""

from __future__ import annotations

import socket
import threading
from typing import Any, Literal

from typing_extensions import Self


class ThreadedServer:
    """``with Server(app) as s:`` serves ``app`` at ``s.url`` until the block ends."""

    path = ""  # appended to ``url`` (e.g. ``/v1``)

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        backlog: int = 64,
        lifespan: Literal["auto", "on", "off"] = "off",
    ) -> None:
        import uvicorn

        self.app = app
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(backlog)
        self.host, self.port = self.sock.getsockname()[:2]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan))
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    def serve_forever(self) -> None:
        self.server.run(sockets=[self.sock])

    def wait_ready(self) -> None:
        """Called after the thread starts; subclasses block here until the app is ready."""

    def __enter__(self) -> Self:
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.sock.close()
