"""LLM-as-judge tier: a rubric, a structured score, any backend of the engine.

The judge sees the conversation and the rubric and must reply with JSON
``{"score": 1..max_score, "reason": "..."}`` (validated, re-asked on failure); records scored
below ``min_score`` are rejected with the judge's reason. Replies are cached like generation.
"""

from __future__ import annotations

from typing import Any

from synthtune.config import JudgeConfig
from synthtune.llm.backends.base import GenerationRequest
from synthtune.llm.engine import GenerationEngine
from synthtune.llm.structured import ask
from synthtune.records import Record


def judge_schema(cfg: JudgeConfig) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["score", "reason"],
        "properties": {
            "score": {"type": "integer", "minimum": 1, "maximum": cfg.max_score},
            "reason": {"type": "string"},
        },
    }


def judge_prompt(record: Record, cfg: JudgeConfig) -> str:
    turns = "\n".join(f"[{m.role}] {m.content}" for m in record.payload.messages)
    return (
        f"You are a strict data-quality judge. {cfg.rubric}\n"
        f"Score from 1 (unusable) to {cfg.max_score} (excellent).\n\n"
        f"Conversation:\n{turns}\n\n"
        'Reply with JSON only: {"score": <integer>, "reason": "<one sentence>"}'
    )


def judge_records(records: list[Record], cfg: JudgeConfig, engine: GenerationEngine) -> None:
    requests = [
        GenerationRequest(r.id, [{"role": "user", "content": judge_prompt(r, cfg)}], None, 0)
        for r in records
    ]
    replies = ask(engine, requests, [judge_schema(cfg)] * len(requests), cfg.max_reasks)
    for record, reply in zip(records, replies, strict=True):
        if reply.value is None:
            record.quality["judge"] = {"error": reply.error}
            record.reject(f"judge: no valid verdict ({reply.error})")
            continue
        score, reason = int(reply.value["score"]), str(reply.value["reason"])
        record.quality["judge"] = {"score": score, "reason": reason}
        if score < cfg.min_score:
            record.reject(f"judge: score {score} below {cfg.min_score} ({reason})")
