"""self-instruct (Wang et al., 2023): seed tasks -> new instructions -> answers.

Each item shows ``examples_per_prompt`` tasks drawn from the pool (seed tasks plus accepted
new ones) to the template prompt as ``examples``, takes the reply as a new instruction, and
rejects it when its ROUGE-L F1 to any pooled task exceeds ``novelty_rouge_max`` (0.7 in the
paper). Survivors are answered in one batched call. The pool is rebuilt from flushed records
on resume, so a resumed run sees the same pool as an uninterrupted one.
"""

from __future__ import annotations

import re
from typing import Any

from synthtune import plugins
from synthtune.config import Recipe, SelfInstructStrategy
from synthtune.generate.strategies.base import (
    Output,
    WorkItem,
    load_lines,
    plan_template_items,
    usage_lineage,
)
from synthtune.llm.backends.base import GenerationRequest
from synthtune.llm.engine import GenerationEngine
from synthtune.llm.structured import ask
from synthtune.llm.tokens import estimate_messages
from synthtune.records import Record
from synthtune.templates import request_rng
from synthtune.textsim import max_rouge_l

_NUMBERING = re.compile(r"^\s*(?:\d+[.)]|[-*]|task\s*\d*\s*:|instruction\s*:)\s*", re.IGNORECASE)


def clean_instruction(text: str) -> str:
    first = next((line for line in text.strip().splitlines() if line.strip()), "")
    return _NUMBERING.sub("", first).strip().strip('"').strip()


class SelfInstruct:
    name = "self-instruct"

    def __init__(self, recipe: Recipe) -> None:
        assert isinstance(recipe.generation.strategy, SelfInstructStrategy)
        self.recipe = recipe
        self.cfg = recipe.generation.strategy
        self.pool = load_lines(self.cfg.seed_tasks)

    def plan(self) -> list[WorkItem]:
        return plan_template_items(self.recipe, self.recipe.generation.n, frozenset({"examples"}))

    def restore(self, records: list[Record]) -> None:
        for record in records:
            if record.status == "accepted":
                users = [m.content for m in record.payload.messages if m.role == "user"]
                self.pool.extend(users[-1:])

    def estimate(self, item: WorkItem) -> tuple[int, int]:
        return 2, 2 * estimate_messages(item.messages(examples=self._examples(item)))

    def _examples(self, item: WorkItem) -> str:
        rng = request_rng(self.recipe.seed, item.index, "examples")
        k = min(self.cfg.examples_per_prompt, len(self.pool))
        return "\n".join(f"{n}. {t}" for n, t in enumerate(rng.sample(self.pool, k), 1))

    def run(self, items: list[WorkItem], engine: GenerationEngine) -> list[list[Output]]:
        shown = [self._examples(it) for it in items]
        asks = [
            GenerationRequest(it.key, it.messages(examples=ex), None, it.index)
            for it, ex in zip(items, shown, strict=True)
        ]
        drafts = ask(engine, asks)
        outputs: list[list[Output] | None] = [None] * len(items)
        survivors: list[tuple[int, str]] = []
        for i, draft in enumerate(drafts):
            instruction = clean_instruction(draft.text or "")
            lineage: dict[str, Any] = {"examples": shown[i], "draft": draft.text}
            if draft.text is None or not instruction:
                error = draft.error or "self-instruct: empty instruction"
                outputs[i] = [Output(asks[i].messages, error, {**lineage, **usage_lineage(draft)})]
                continue
            score, closest = max_rouge_l(instruction, self.pool)
            lineage["novelty_rouge_l"] = round(score, 4)
            if score > self.cfg.novelty_rouge_max:
                error = f"self-instruct: too similar to an existing task (ROUGE-L {score:.2f})"
                lineage["closest"] = closest
                outputs[i] = [
                    Output(
                        [{"role": "user", "content": instruction}],
                        error,
                        {**lineage, **usage_lineage(draft)},
                    )
                ]
                continue
            self.pool.append(instruction)  # later items in this batch must differ from it too
            survivors.append((i, instruction))
            outputs[i] = [Output([], None, lineage)]
        requests = self._answer_requests(items, survivors)
        answers = ask(engine, requests)
        for (i, _), request, answer in zip(survivors, requests, answers, strict=True):
            slot = outputs[i]
            assert slot is not None
            messages = list(request.messages)
            if answer.text is not None:
                messages.append({"role": "assistant", "content": answer.text})
            usage = usage_lineage(drafts[i], answer)
            slot[0] = Output(messages, answer.error, {**slot[0].lineage, **usage})
        return [o for o in outputs if o is not None]

    def _answer_requests(
        self, items: list[WorkItem], survivors: list[tuple[int, str]]
    ) -> list[GenerationRequest]:
        requests = []
        for i, instruction in survivors:
            system = items[i].render(examples="")["system"]
            messages = [{"role": "system", "content": str(system)}] if system else []
            messages.append({"role": "user", "content": instruction})
            requests.append(GenerationRequest(items[i].key, messages, None, items[i].index))
        return requests


plugins.register_strategy("self-instruct", SelfInstruct, config=SelfInstructStrategy)
