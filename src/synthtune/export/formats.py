"""Dataset export formats, registered by name: record -> one JSON-able row (or None to skip)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from synthtune import plugins
from synthtune.records import Record

Formatter = Callable[[Record], dict[str, Any] | None]
FORMATS = plugins.EXPORT_FORMATS  # name -> Formatter


def _turns(record: Record) -> tuple[str, str, str]:
    system = "\n".join(m.content for m in record.payload.messages if m.role == "system")
    user = "\n".join(m.content for m in record.payload.messages if m.role == "user")
    reply = "\n".join(m.content for m in record.payload.messages if m.role == "assistant")
    return system, user, reply


def with_media(row: dict[str, Any], record: Record) -> dict[str, Any]:
    """Image records keep their images: ``images`` (paths relative to the run directory, the
    column LLaMA-Factory's multimodal datasets read), ``boxes`` and the class ``label``."""
    media = record.payload.media
    if not media:
        return row
    images = [m for m in media if m.type == "image"]
    audio = [m.path for m in media if m.type == "audio"]
    return {
        **row,
        **({"images": [m.path for m in images]} if images else {}),
        **({"boxes": [[b.model_dump() for b in m.boxes] for m in images]} if images else {}),
        **({"audios": audio} if audio else {}),
        "label": record.payload.label,
    }


@FORMATS.decorator("openai")
def openai_messages(record: Record) -> dict[str, Any] | None:
    """OpenAI fine-tuning chat format: {"messages": [{"role", "content"}, ...]}."""
    return with_media({"messages": [m.model_dump() for m in record.payload.messages]}, record)


@FORMATS.decorator("alpaca")
def alpaca(record: Record) -> dict[str, Any] | None:
    """Alpaca: instruction / input / output (+ system); plain texts have no instruction."""
    system, user, reply = _turns(record)
    return with_media({"instruction": user, "input": "", "output": reply, "system": system}, record)


@FORMATS.decorator("sharegpt")
def sharegpt(record: Record) -> dict[str, Any] | None:
    """ShareGPT: {"conversations": [{"from": human|gpt|system, "value"}]}."""
    names = {"system": "system", "user": "human", "assistant": "gpt"}
    turns = [{"from": names[m.role], "value": m.content} for m in record.payload.messages]
    return with_media({"conversations": turns}, record)
