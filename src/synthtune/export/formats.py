"""Dataset export formats, registered by name: record -> one JSON-able row (or None to skip)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from synthtune.records import Record
from synthtune.registry import Registry

Formatter = Callable[[Record], dict[str, Any] | None]
FORMATS: Registry[Formatter] = Registry("export format")


def _turns(record: Record) -> tuple[str, str, str]:
    system = "\n".join(m.content for m in record.payload.messages if m.role == "system")
    user = "\n".join(m.content for m in record.payload.messages if m.role == "user")
    reply = "\n".join(m.content for m in record.payload.messages if m.role == "assistant")
    return system, user, reply


@FORMATS.decorator("openai")
def openai_messages(record: Record) -> dict[str, Any] | None:
    """OpenAI fine-tuning chat format: {"messages": [{"role", "content"}, ...]}."""
    return {"messages": [m.model_dump() for m in record.payload.messages]}


@FORMATS.decorator("alpaca")
def alpaca(record: Record) -> dict[str, Any] | None:
    """Alpaca: instruction / input / output (+ system); plain texts have no instruction."""
    system, user, reply = _turns(record)
    return {"instruction": user, "input": "", "output": reply, "system": system}


@FORMATS.decorator("sharegpt")
def sharegpt(record: Record) -> dict[str, Any] | None:
    """ShareGPT: {"conversations": [{"from": human|gpt|system, "value"}]}."""
    names = {"system": "system", "user": "human", "assistant": "gpt"}
    return {
        "conversations": [
            {"from": names[m.role], "value": m.content} for m in record.payload.messages
        ]
    }
