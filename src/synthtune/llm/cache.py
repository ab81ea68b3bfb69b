"""Content-addressed response cache: request hash -> reply, in SQLite (WAL).

The key covers what decides a reply (backend type, model, sampling parameters, messages and
the sample index, so repeated prompts at temperature > 0 stay distinct samples) and nothing
operational (concurrency, timeouts, retries, key variable). Re-running, resuming, forcing a
stage or editing a later part of the recipe therefore never pays twice for a request. Only
successful replies are cached, so failures are retried next time. The file lives in
``runs/<name>/cache/``, outside any stage folder, so invalidating a stage keeps it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from synthtune.config.base import fingerprint_rule
from synthtune.llm.backends.base import GenerationResult
from synthtune.records import content_hash
from synthtune.secrets import redact

# Fields of backend configs that change how a request is sent, not what comes back.
OPERATIONAL = frozenset(
    {
        "concurrency",
        "timeout_s",
        "max_retries",
        "backoff_s",
        "max_backoff_s",
        "max_rpm",
        "connect_timeout_s",
        "read_timeout_s",
        "pool_timeout_s",
        "latency_tolerance",
        "server_metrics",
        "breaker_failures",
        "breaker_cooldown_s",
        "breaker_max_cooldown_s",
        "max_pause_s",
        "api_key_env",
        "batch_size",
        "device",
        "kv_cache",
    }
)


def backend_dump(config: Any) -> dict[str, Any]:
    """A backend section as the cache key reads it: its JSON dump without the execution
    knobs marked ``{"fingerprint": "never"}`` (the openai backend's Batch API ``mode`` and
    ``batch_*`` fields), which change how requests travel, not what comes back; added after
    caches existed, they must not move any key."""
    dump: dict[str, Any] = config.model_dump(mode="json")
    for name, info in type(config).model_fields.items():
        if fingerprint_rule(info) == "never":
            dump.pop(info.alias or name, None)
    return dump


def cache_key(backend: dict[str, Any], messages: list[dict[str, str]], sample: int) -> str:
    decisive = {k: v for k, v in backend.items() if k not in OPERATIONAL}
    return content_hash({"backend": decisive, "messages": messages, "sample": sample}, 32)


class ResponseCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # one connection, used from the generate stage's batch threads under a lock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
            "tokens_in INTEGER, tokens_out INTEGER, created REAL)"
        )

    def get_many(self, keys: list[str]) -> dict[str, GenerationResult]:
        found: dict[str, GenerationResult] = {}
        for start in range(0, len(keys), 500):  # SQLite caps bound parameters per query
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT key, text, tokens_in, tokens_out FROM responses WHERE key IN ({marks})"
            with self._lock:
                rows = self._db.execute(query, chunk).fetchall()
            for key, text, tokens_in, tokens_out in rows:
                found[key] = GenerationResult(text=text, tokens_in=tokens_in, tokens_out=tokens_out)
        return found

    def put_many(self, items: list[tuple[str, GenerationResult]]) -> None:
        rows = [
            (key, redact(r.text or ""), r.tokens_in, r.tokens_out, time.time())
            for key, r in items
            if r.text is not None and r.error is None
        ]
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)", rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()
