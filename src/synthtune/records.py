"""The Record: one training example plus everything known about where it came from.

The id is a content hash of the canonical payload only, so the same example produced twice
(by another run, another request, or a resumed run) has the same id: that is what exact
dedup, caching and resume key on. Lineage, quality and status never change the id.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant"]
Status = Literal["accepted", "rejected", "pending_review"]
Source = Literal["synthetic", "real"]
Split = Literal["train", "val", "test"]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    role: Role
    content: str


class Payload(BaseModel):
    """One canonical shape for every task; importers/exporters translate at the edges."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    messages: list[Message]
    label: str | None = None

    def text(self, part: Literal["response", "prompt", "all"] = "all") -> str:
        """Plain text of the payload; ``response`` = assistant turns (or all text if none)."""
        if part == "response":
            chosen = [m.content for m in self.messages if m.role == "assistant"]
            return "\n".join(chosen) if chosen else self.text("all")
        if part == "prompt":
            return "\n".join(m.content for m in self.messages if m.role != "assistant")
        return "\n".join(m.content for m in self.messages)

    def input_text(self) -> str:
        """What a classifier reads: the non-assistant turns, or the text itself."""
        turns = [m.content for m in self.messages if m.role != "assistant"]
        return "\n".join(turns) if turns else self.text("all")


def canonical_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def content_hash(value: Any, length: int = 16) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:length]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    source: Source
    payload: Payload
    lineage: dict[str, Any] = Field(default_factory=dict)
    quality: dict[str, Any] = Field(default_factory=dict)
    status: Status = "accepted"
    reasons: list[str] = Field(default_factory=list)

    @classmethod
    def create(cls, source: Source, payload: Payload, **fields: Any) -> Record:
        return cls(id=payload_id(payload), source=source, payload=payload, **fields)

    def reject(self, reason: str) -> None:
        """Mark rejected, keeping every earlier reason (rejects are never dropped)."""
        self.status = "rejected"
        if reason not in self.reasons:
            self.reasons.append(reason)


def payload_id(payload: Payload) -> str:
    return content_hash(payload.model_dump(mode="json"))


def split_of(record_id: str, seed: int, val_fraction: float, test_fraction: float) -> Split:
    """Deterministic split from the id alone: stable across runs, sizes and resumes.

    Used for real data so that every stage (mix, and the local model's pre-training corpus)
    agrees on which records are held out for testing without passing state around.
    """
    bucket = int(hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest()[:8], 16) / 16**8
    if bucket < test_fraction:
        return "test"
    if bucket < test_fraction + val_fraction:
        return "val"
    return "train"
