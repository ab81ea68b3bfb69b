"""A loopback fake of OpenAI's Batch API (files and batches), for tests.

Endpoints: ``POST /v1/files`` (multipart, purpose ``batch``), ``GET /v1/files/{id}/content``,
``POST /v1/batches``, ``GET /v1/batches/{id}``, ``GET /v1/batches`` (newest first).

A batch advances only when it is polled: it answers ``validating`` to the first poll,
``in_progress`` until ``polls_to_finish`` polls have been made, then ends with
``final_status`` (``completed``, ``expired``, ``cancelled`` or ``failed``). An expired or
cancelled batch has processed only its first ``processed`` lines (the rest are in its error
file with ``batch_expired`` / ``batch_cancelled``, as OpenAI does); a failed one processed none
and carries ``errors``. ``polls_to_finish=None`` never finishes. Output lines come back in
reverse order, so a client must map them by ``custom_id``.

The user message steers each line, like :mod:`synthtune.testing.fake_openai`: ``line-error``
puts it into the error file with an ``error`` object, ``http-400`` with a 400 response,
``empty`` answers empty content; anything else gets ``echo: <prompt>``. Every call is logged in
``calls`` as ``(method, path)``; ``fail_next`` answers the next N calls with 500.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlparse

from synthtune.testing.fake_openai import LoopbackFake, QuietHandler


@dataclass
class FakeBatchAPI(LoopbackFake):
    polls_to_finish: int | None = 2
    final_status: str = "completed"
    processed: int | None = None  # lines processed before an expiry or cancellation
    fail_next: int = 0
    calls: list[tuple[str, str]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    _polls: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _handler(self)

    def count(self, method: str, path: str) -> int:
        return sum(call == (method, path) for call in self.calls)

    def input_lines(self, batch_id: str) -> list[dict[str, Any]]:
        data = self.files[self.batches[batch_id]["input_file_id"]]
        return [json.loads(line) for line in data.decode().splitlines()]

    # ------------------------------------------------------------------ endpoints
    def handle(
        self, method: str, path: str, headers: Any, body: bytes
    ) -> tuple[int, dict[str, Any] | bytes]:
        route = urlparse(path).path
        with self._lock:
            self.calls.append((method, route))
            if self.fail_next > 0:
                self.fail_next -= 1
                return 500, {"error": {"message": "injected"}}
            parts = route.strip("/").split("/")  # v1, files|batches, id?, content?
            if method == "POST" and route == "/v1/files":
                return self._upload(headers, body)
            if method == "POST" and route == "/v1/batches":
                return self._create(json.loads(body or b"{}"))
            if method == "GET" and route == "/v1/batches":
                listed = sorted(self.batches.values(), key=lambda b: -b["created_at"])
                return 200, {"object": "list", "data": listed, "has_more": False}
            if method == "GET" and len(parts) == 3 and parts[1] == "batches":
                return self._poll(parts[2])
            if method == "GET" and len(parts) == 4 and parts[1] == "files":
                if parts[2] not in self.files:
                    return 404, {"error": {"message": f"no file {parts[2]}"}}
                return 200, self.files[parts[2]]
            return 404, {"error": {"message": f"no route {method} {route}"}}

    def _upload(self, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        head = f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + body)
        fields: dict[str, bytes] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(payload, bytes):
                fields[name] = payload
        if fields.get("purpose") != b"batch" or "file" not in fields:
            return 400, {"error": {"message": "purpose=batch and a file are required"}}
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = fields["file"]
        return 200, {"id": file_id, "object": "file", "purpose": "batch"}

    def _create(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if params.get("input_file_id") not in self.files:
            return 400, {"error": {"message": "unknown input_file_id"}}
        batch_id = f"batch_{len(self.batches) + 1}"
        total = len(self.files[params["input_file_id"]].splitlines())
        self.batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": params.get("endpoint"),
            "input_file_id": params["input_file_id"],
            "completion_window": params.get("completion_window"),
            "status": "validating",
            "created_at": len(self.batches) + 1,
            "output_file_id": None,
            "error_file_id": None,
            "errors": None,
            "metadata": params.get("metadata"),
            "request_counts": {"total": total, "completed": 0, "failed": 0},
        }
        self._polls[batch_id] = 0
        return 200, self.batches[batch_id]

    def _poll(self, batch_id: str) -> tuple[int, dict[str, Any]]:
        batch = self.batches.get(batch_id)
        if batch is None:
            return 404, {"error": {"message": f"no batch {batch_id}"}}
        if batch["status"] in ("completed", "expired", "cancelled", "failed"):
            return 200, batch
        self._polls[batch_id] += 1
        n = self._polls[batch_id]
        if self.polls_to_finish is None or n < self.polls_to_finish:
            batch["status"] = "validating" if n == 1 else "in_progress"
            return 200, batch
        self._finish(batch)
        return 200, batch

    def _finish(self, batch: dict[str, Any]) -> None:
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]].splitlines()]
        status = self.final_status
        if status == "failed":
            batch["status"] = "failed"
            batch["errors"] = {
                "object": "list",
                "data": [{"code": "invalid_request", "message": "injected validation failure"}],
            }
            return
        ran = len(lines) if status == "completed" or self.processed is None else self.processed
        output: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        body: dict[str, Any]
        for i, line in enumerate(lines):
            prompt = line["body"]["messages"][-1]["content"]
            if i >= ran:
                code = f"batch_{status}"
                errors.append(_error_line(line, code, f"not run: the batch was {status}"))
            elif "line-error" in prompt:
                errors.append(_error_line(line, "server_error", "injected line error"))
            elif "http-400" in prompt:
                body = {"error": {"message": "injected bad request"}}
                errors.append(
                    {
                        "id": f"req_{i}",
                        "custom_id": line["custom_id"],
                        "response": {"status_code": 400, "request_id": f"r{i}", "body": body},
                        "error": None,
                    }
                )
            else:
                content = "" if "empty" in prompt else f"echo: {prompt}"
                body = {
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 2},
                }
                output.append(
                    {
                        "id": f"req_{i}",
                        "custom_id": line["custom_id"],
                        "response": {"status_code": 200, "request_id": f"r{i}", "body": body},
                        "error": None,
                    }
                )
        for kind, rows in (("output_file_id", output), ("error_file_id", errors)):
            if rows:
                file_id = f"file-{len(self.files) + 1}"
                text = "".join(json.dumps(r) + "\n" for r in reversed(rows))
                self.files[file_id] = text.encode()
                batch[kind] = file_id
        batch["status"] = status
        batch["request_counts"] = {
            "total": len(lines),
            "completed": len(output),
            "failed": len(errors),
        }


def _error_line(line: dict[str, Any], code: str, message: str) -> dict[str, Any]:
    return {
        "id": None,
        "custom_id": line["custom_id"],
        "response": None,
        "error": {"code": code, "message": message},
    }


def _handler(fake: FakeBatchAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, reply = fake.handle(method, self.path, self.headers, body)
            data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
            kind = "application/octet-stream" if isinstance(reply, bytes) else "application/json"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

    return Handler
