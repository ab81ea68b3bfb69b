"""The Record: one training example plus everything known about where it came from.

The id is a content hash of the canonical payload only, so the same example produced twice
(by another run, another request, or a resumed run) has the same id: that is what exact
dedup, caching and resume key on. Lineage, quality and status never change the id.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Role = Literal["system", "user", "assistant"]
Status = Literal["accepted", "rejected", "pending_review"]
Source = Literal["synthetic", "real"]
Split = Literal["train", "val", "test"]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    role: Role
    content: str


class Box(BaseModel):
    """A labelled axis-aligned box in pixels: ``x0 <= x < x1``, ``y0 <= y < y1`` (the PIL
    ``crop`` convention), so ``mask[y0:y1, x0:x1]`` holds every labelled pixel."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    label: str
    x0: int = Field(ge=0)
    y0: int = Field(ge=0)
    x1: int = Field(gt=0)
    y1: int = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Box:
        if self.x1 <= self.x0 or self.y1 <= self.y0:
            raise ValueError(f"empty box ({self.x0},{self.y0})-({self.x1},{self.y1})")
        return self


class Media(BaseModel):
    """One media item of a payload. Paths are relative to the run directory (or, for real
    data, to its data file), so a run folder can move without breaking its records."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["image"] = "image"
    path: str = Field(description="Image file, relative to the run directory.")
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    boxes: tuple[Box, ...] = ()
    mask: str | None = Field(None, description="Binary mask image (same size), relative path.")


class AudioMedia(BaseModel):
    """A sound clip of a payload (16-bit PCM WAV, mono). Its own model beside the image one,
    so image records keep their ids (a payload's id hashes its media's fields)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["audio"]
    path: str = Field(description="WAV file, relative to the run directory.")
    sample_rate: int = Field(gt=0, description="Samples per second.")
    seconds: float = Field(gt=0, description="Duration.")


MediaItem = Annotated[Media | AudioMedia, Field(discriminator="type")]


class Payload(BaseModel):
    """One canonical shape for every task; importers/exporters translate at the edges.

    An image record is an ordinary payload whose ``media`` holds the image; its caption is
    the user turn (``input_text()``), its class the ``label``. Text code paths need no case
    for it: a caption has no assistant reply, so reply-scoring tiers skip it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    messages: list[Message]
    label: str | None = None
    media: tuple[MediaItem, ...] | None = None

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
    """Content hash of the payload; a payload without media hashes exactly as before media
    existed (the key is left out, not dumped as null), so text record ids never change."""
    return content_hash(
        payload.model_dump(mode="json", exclude={"media"} if payload.media is None else None)
    )


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


def stratum_value(record: Record, key: str) -> Any:
    """``template``/``strategy``/any lineage key; ``slots.gender``; ``label``."""
    if key == "label":
        return record.payload.label
    if key.startswith("slots."):
        return record.lineage.get("slots", {}).get(key.removeprefix("slots."))
    return record.lineage.get(key)


def stratum_of(record: Record, stratify_by: list[str]) -> str:
    """The record's stratum (review sampling, mix counts): ``key=value`` joined by `` | ``."""
    return " | ".join(f"{k}={stratum_value(record, k)}" for k in stratify_by) or "all"


def tier_outcome(record: Record) -> str:
    """``accepted``, or the tier that rejected the record first (its first reason's prefix,
    e.g. ``fluency``, ``rules``, ``dedup``)."""
    if record.status == "accepted":
        return "accepted"
    first = record.reasons[0] if record.reasons else "rejected"
    return first.split(":")[0].strip() or "rejected"
