"""An in-memory stand-in for the Argilla server's HTTP API (argilla 2.x), for httpx's
MockTransport: it answers exactly the calls ``rg.Dataset.from_disk``, ``dataset.records``
and ``dataset.to_disk`` make, so the client's own code loads and exports our folders with
no server and no network. ``annotate`` plays the annotators."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx

NOW = {"inserted_at": "2024-01-01T00:00:00", "updated_at": "2024-01-01T00:00:00"}
_DATASET_PATH = re.compile(r"/api/v1/(?:me/)?datasets/[^/]+(?:/([\w-]+))?(?:/\w+)?")


class FakeArgillaAPI:
    def __init__(self) -> None:
        self.user = {"id": str(uuid.uuid4()), "username": "owner", "role": "owner", **NOW}
        self.workspace = {"id": str(uuid.uuid4()), "name": "default", **NOW}
        self.dataset: dict[str, Any] = {}
        self.settings: dict[str, list[dict[str, Any]]] = {
            "fields": [],
            "questions": [],
            "metadata-properties": [],
            "vectors-settings": [],
        }
        self.records: list[dict[str, Any]] = []

    def client(self) -> Any:
        import argilla as rg

        transport = httpx.MockTransport(self)
        return rg.Argilla(api_url="http://argilla.test", api_key="k", mounts={"all://": transport})

    def annotate(self, record_id: str, user_id: str, status: str, **values: str) -> None:
        """One user's response to the record whose external id is RECORD_ID."""
        record = next(r for r in self.records if r["external_id"] == record_id)
        response = {"values": {q: {"value": v} for q, v in values.items()}, "status": status}
        record["responses"].append({**response, "user_id": user_id})
        if any(r["status"] == "submitted" for r in record["responses"]):
            record["status"] = "completed"  # min_submitted = 1

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        body = json.loads(request.content) if request.content else None
        if path == "/api/v1/me":
            return httpx.Response(200, json=self.user)
        if path == "/api/v1/me/workspaces":
            return httpx.Response(200, json={"items": [self.workspace]})
        if path.startswith("/api/v1/workspaces/"):
            return httpx.Response(200, json=self.workspace)
        if path == "/api/v1/me/datasets":
            return httpx.Response(200, json={"items": []})
        if path == "/api/v1/datasets" and method == "POST":
            self.dataset = {**body, **NOW, "id": str(uuid.uuid4())}
            return httpx.Response(201, json=self.dataset)
        match = _DATASET_PATH.fullmatch(path)
        if match is None:
            return httpx.Response(404, json={"detail": f"{method} {path}"})
        part = match.group(1)
        if part is None:
            return httpx.Response(200, json=self.dataset)
        if part == "publish":
            self.dataset["status"] = "ready"
            return httpx.Response(200, json=self.dataset)
        if part == "records" and method == "PUT":
            items = [{**r, **NOW, "id": str(uuid.uuid4())} for r in body["items"]]
            self.records.extend(items)
            return httpx.Response(200, json={"items": items})
        if part == "records":
            offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
            return httpx.Response(200, json={"items": self.records[offset : offset + limit]})
        if method == "POST":
            item = {**body, **NOW, "id": str(uuid.uuid4())}
            self.settings[part].append(item)
            return httpx.Response(201, json=item)
        return httpx.Response(200, json={"items": self.settings[part]})
