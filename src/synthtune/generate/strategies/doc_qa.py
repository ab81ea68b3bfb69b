"""document-to-QA: question/answer pairs grounded in chunks of local documents.

Each chunk is one item (up to ``n``); the template sees ``chunk``, ``document`` and
``questions`` and must return JSON ``{"pairs": [{"question", "answer", "evidence"}]}`` (the
default schema, or the template's own). Each pair becomes a record that keeps its source
chunk id and span; a pair whose ``evidence`` quote is not in its chunk is rejected as
ungrounded.
"""

from __future__ import annotations

from typing import Any

from synthtune import plugins
from synthtune.config import DocQAStrategy, Recipe
from synthtune.generate.documents import Chunk, load_chunks
from synthtune.generate.strategies.base import (
    Output,
    WorkItem,
    item_requests,
    plan_template_items,
    single_call_estimate,
    usage_lineage,
)
from synthtune.llm.engine import GenerationEngine
from synthtune.llm.structured import ask
from synthtune.records import Record

PAIRS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["pairs"],
    "properties": {
        "pairs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["question", "answer"],
                "properties": {
                    "question": {"type": "string", "minLength": 1},
                    "answer": {"type": "string", "minLength": 1},
                    "evidence": {"type": "string"},
                },
            },
        }
    },
}
PROVIDED = frozenset({"chunk", "document", "questions"})


def _normal(text: str) -> str:
    return " ".join(text.split()).lower()


class DocQA:
    name = "doc-qa"

    def __init__(self, recipe: Recipe) -> None:
        assert isinstance(recipe.generation.strategy, DocQAStrategy)
        self.recipe = recipe
        self.cfg = recipe.generation.strategy
        self.chunks: list[Chunk] = load_chunks(
            list(self.cfg.documents), self.cfg.chunk_chars, self.cfg.overlap_chars
        )[: recipe.generation.n]

    def plan(self) -> list[WorkItem]:
        def extras(i: int) -> dict[str, Any]:
            c = self.chunks[i]
            return {
                "chunk": c.text,
                "document": c.document.rsplit("/", 1)[-1],
                "questions": self.cfg.questions_per_chunk,
                "chunk_id": c.id,
            }

        return plan_template_items(self.recipe, len(self.chunks), PROVIDED, extras)

    def restore(self, records: list[Record]) -> None:
        return None

    def estimate(self, item: WorkItem) -> tuple[int, int]:
        return single_call_estimate(item)

    def run(self, items: list[WorkItem], engine: GenerationEngine) -> list[list[Output]]:
        requests = item_requests(items)
        schemas = [it.template.config.json_schema or PAIRS_SCHEMA for it in items]
        reasks = max(it.template.config.max_reasks for it in items)
        outputs = []
        for item, request, reply in zip(
            items, requests, ask(engine, requests, schemas, reasks), strict=True
        ):
            chunk = self.chunks[item.index]
            source = {
                "chunk_id": chunk.id,
                "document": chunk.document,
                "span": [chunk.start, chunk.end],
            }
            usage = usage_lineage(reply)
            if reply.value is None:
                outputs.append([Output(list(request.messages), reply.error, {**source, **usage})])
                continue
            outputs.append(
                [
                    self._pair(p, chunk, source, usage if n == 0 else {})
                    for n, p in enumerate(reply.value["pairs"])
                ]
            )
        return outputs

    def _pair(
        self, pair: dict[str, str], chunk: Chunk, source: dict[str, Any], usage: dict[str, Any]
    ) -> Output:
        messages = [
            {"role": "user", "content": pair["question"].strip()},
            {"role": "assistant", "content": pair["answer"].strip()},
        ]
        evidence = pair.get("evidence", "").strip()
        lineage = {**source, **usage, "evidence": evidence or None}
        if evidence:
            at = chunk.text.find(evidence)
            if at >= 0:
                lineage["evidence_span"] = [chunk.start + at, chunk.start + at + len(evidence)]
            elif _normal(evidence) not in _normal(chunk.text):
                return Output(messages, "doc-qa: evidence not found in the source chunk", lineage)
        return Output(messages, None, lineage)


plugins.register_strategy("doc-qa", DocQA, config=DocQAStrategy)
