"""Heuristic checks: cheap, explainable reasons to reject a reply before any model runs."""

from __future__ import annotations

import json
import re
from collections import Counter

from synthtune.config import HeuristicsConfig
from synthtune.records import Payload
from synthtune.textsim import tokens

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LEAK = re.compile(r"\{\{|\}\}|\{%|%\}")
# Refusals and assistant boilerplate, English and Chinese (what Alpaca/ShareGPT cleaners drop).
REFUSALS = [
    r"\bas an ai\b",
    r"\bas a(?:n)? (?:large )?language model\b",
    r"\bi(?:'m| am) (?:sorry|unable|not able)\b",
    r"\bi cannot (?:help|assist|provide)\b",
    r"\bi can't (?:help|assist|provide)\b",
    r"作为一个?(?:人工智能|AI|语言模型)",
    r"我(?:无法|不能)(?:回答|提供|帮助)",
    r"很抱歉",
]


def cjk_ratio(text: str) -> float:
    letters = [c for c in text if not c.isspace()]
    return len(_CJK.findall(text)) / len(letters) if letters else 0.0


def repetition(text: str, n: int = 3) -> float:
    """Share of n-grams (words; characters for CJK) that repeat an earlier one."""
    toks = tokens(text)
    grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
    if not grams:
        return 0.0
    counts = Counter(grams)
    return sum(c - 1 for c in counts.values()) / len(grams)


def heuristic_reasons(
    payload: Payload, cfg: HeuristicsConfig, schema_declared: bool = False
) -> list[str]:
    reply = payload.text("response")
    reasons = []
    if len(reply) < cfg.min_chars:
        reasons.append(f"heuristics: reply too short ({len(reply)} < {cfg.min_chars} chars)")
    if len(reply) > cfg.max_chars:
        reasons.append(f"heuristics: reply too long ({len(reply)} > {cfg.max_chars} chars)")
    ratio = cjk_ratio(reply)
    if cfg.min_cjk_ratio is not None and ratio < cfg.min_cjk_ratio:
        reasons.append(f"heuristics: too little CJK text ({ratio:.2f} < {cfg.min_cjk_ratio})")
    if cfg.max_cjk_ratio is not None and ratio > cfg.max_cjk_ratio:
        reasons.append(f"heuristics: too much CJK text ({ratio:.2f} > {cfg.max_cjk_ratio})")
    rep = repetition(reply)
    if rep > cfg.max_repetition:
        reasons.append(f"heuristics: repetitive ({rep:.2f} of 3-grams repeat)")
    patterns = (REFUSALS if cfg.refusal else []) + cfg.extra_patterns
    for pattern in patterns:
        hit = re.search(pattern, reply, re.IGNORECASE)
        if hit:
            reasons.append(f"heuristics: refusal or boilerplate ({hit.group(0)!r})")
            break
    if cfg.template_leakage and _LEAK.search(payload.text("all")):
        reasons.append("heuristics: template leakage (unfilled {{ }} or {% %})")
    if cfg.json_when_schema and schema_declared:
        try:
            json.loads(reply)
        except json.JSONDecodeError:
            reasons.append("heuristics: invalid JSON for a template with a schema")
    return reasons
