"""Secret values never reach disk, logs or output: one redactor for the whole process.

Backends register the secrets they read (API keys from the environment); everything the run
store writes as text (JSON, JSONL, HTML, the text columns of record tables) and everything
the CLI prints goes through :func:`redact`. Redacting where data is written, not in each
backend, also covers a hostile or buggy server that echoes the key back in an error body,
a header or a reply: whatever path the value takes into a record, it is replaced on the way
out.
"""

from __future__ import annotations

import io
import threading
from typing import Any, TextIO

REDACTED = "[REDACTED]"
MIN_LENGTH = 6  # shorter values would redact ordinary words; no real key is this short

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()


def register_secret(value: str | None) -> None:
    """Redact ``value`` (and its ``Bearer`` header form) from everything written from now on."""
    global _secrets
    if not value or len(value) < MIN_LENGTH:
        return
    with _lock:
        if value not in _secrets:
            # longest first: a key that contains another is replaced whole
            _secrets = tuple(sorted({*_secrets, value}, key=len, reverse=True))


def registered() -> bool:
    return bool(_secrets)


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_value(value: Any) -> Any:
    """``value`` with every string in it (keys and values of mappings, items of lists)
    redacted; other types unchanged."""
    if not _secrets:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value


class RedactingStream(io.TextIOBase):
    """A text stream that redacts what is written to it (the CLI's stdout and stderr)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(redact(text))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")
