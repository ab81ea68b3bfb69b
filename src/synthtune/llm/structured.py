"""Ask the engine for replies, optionally structured: parse, repair, validate, re-ask.

Repair is limited to what cannot change meaning: code fences are stripped and prose around a
single JSON value is ignored (``raw_decode`` from the first ``{`` or ``[``). Validation uses
``jsonschema``. A reply that still fails is re-asked with the validation error, up to
``max_reasks`` times, all failing requests of a batch together; what fails after that is
returned with its reason (kept as a rejected record), never dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from synthtune.llm.backends.base import GenerationRequest, GenerationResult
from synthtune.llm.engine import GenerationEngine

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


@dataclass
class Reply:
    text: str | None
    error: str | None = None
    value: Any = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    attempts: int = 0
    reasks: int = 0
    cached: bool = True
    retry_reasons: list[str] = field(default_factory=list)

    def absorb(self, result: GenerationResult) -> None:
        self.tokens_in += 0 if result.cached else result.tokens_in
        self.tokens_out += 0 if result.cached else result.tokens_out
        self.cost_usd += 0.0 if result.cached else result.cost_usd
        self.attempts += result.attempts
        self.retry_reasons.extend(result.retry_reasons)
        self.cached = self.cached and result.cached


def extract_json(text: str) -> Any:
    """The JSON value in ``text``; raises ValueError saying why there is none."""
    fenced = _FENCE.search(text)
    candidate = (fenced.group(1) if fenced else text).strip()
    try:
        return json.loads(candidate)
    except json.JSONDecodeError:
        pass
    starts = [i for i in (candidate.find("{"), candidate.find("[")) if i >= 0]
    if not starts:
        raise ValueError("no JSON object or array in the reply")
    try:
        value, _ = json.JSONDecoder().raw_decode(candidate[min(starts) :])
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} at char {exc.pos}") from None
    return value


def schema_error(value: Any, schema: dict[str, Any]) -> str | None:
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message}"


def _check(text: str, schema: dict[str, Any]) -> tuple[Any, str | None]:
    try:
        value = extract_json(text)
    except ValueError as exc:
        return None, str(exc)
    return value, schema_error(value, schema)


def _reask(
    request: GenerationRequest, raw: str, error: str, schema: dict[str, Any]
) -> GenerationRequest:
    messages = [
        *request.messages,
        {"role": "assistant", "content": raw},
        {
            "role": "user",
            "content": f"Your reply is not valid ({error}). Reply again with only a JSON value "
            f"that satisfies this JSON Schema:\n{json.dumps(schema, ensure_ascii=False)}",
        },
    ]
    return GenerationRequest(request.key, messages, request.reference, request.sample)


def ask(
    engine: GenerationEngine,
    requests: list[GenerationRequest],
    schemas: Sequence[dict[str, Any] | None] | None = None,
    max_reasks: int = 2,
) -> list[Reply]:
    """One reply per request, in order. With a schema, ``value`` holds the validated JSON."""
    schemas = schemas or [None] * len(requests)
    replies = [Reply(text=None) for _ in requests]
    pending = list(range(len(requests)))
    current = list(requests)
    for round_ in range(max_reasks + 1):
        results = engine.call([current[i] for i in pending])
        retry: list[int] = []
        for i, result in zip(pending, results, strict=True):
            reply = replies[i]
            reply.absorb(result)
            reply.reasks = round_
            if result.text is None:
                reply.text, reply.error = None, result.error
                continue
            schema = schemas[i]
            if schema is None:
                reply.text, reply.error = result.text, None
                continue
            value, error = _check(result.text, schema)
            if error is None:
                reply.value, reply.error = value, None
                reply.text = json.dumps(value, ensure_ascii=False)
            else:
                reply.text, reply.error = None, f"structured: {error}"
                if round_ < max_reasks:
                    current[i] = _reask(current[i], result.text, error, schema)
                    retry.append(i)
        if not retry:
            break
        pending = retry
    return replies
