"""evol-instruct (WizardLM, Xu et al., 2023): evolve instructions, eliminate failed ones.

The rendered template prompt is the starting instruction. Each round rewrites it with one
operation picked from ``(seed, item, round)``: in-depth (add constraints, deepen, concretize,
increase reasoning) or in-breadth (a new instruction of the same domain). An evolution is
eliminated, as in the paper, when the reply is empty, copies the rewriting scaffold, refuses,
or is too close to its parent (ROUGE-L above ``similarity_max``: no information gained). The
final instruction is answered; the evolution chain is kept in lineage.
"""

from __future__ import annotations

import re

from synthtune import plugins
from synthtune.config import EvolInstructStrategy, Recipe
from synthtune.generate.strategies.base import (
    Output,
    WorkItem,
    plan_template_items,
    usage_lineage,
)
from synthtune.llm.backends.base import GenerationRequest
from synthtune.llm.engine import GenerationEngine
from synthtune.llm.structured import Reply, ask
from synthtune.llm.tokens import estimate_messages
from synthtune.records import Record
from synthtune.templates import request_rng
from synthtune.textsim import rouge_l

_DEPTH = (
    "I want you to act as a Prompt Rewriter. Rewrite the given prompt into a more complex "
    "version that a person can still understand and answer. {how} Do not add more than 20 "
    "words. Reply with the rewritten prompt only.\n#Given Prompt#:\n{prompt}\n#Rewritten Prompt#:"
)
OPERATIONS = {
    "constraints": _DEPTH.replace("{how}", "Add one more constraint or requirement."),
    "deepen": _DEPTH.replace("{how}", "Increase the depth and breadth of the inquiry."),
    "concretize": _DEPTH.replace("{how}", "Replace general concepts with more specific ones."),
    "reasoning": _DEPTH.replace(
        "{how}", "If it can be solved with a few simple steps, ask for multi-step reasoning."
    ),
    "breadth": (
        "I want you to act as a Prompt Creator. Draw inspiration from the given prompt to "
        "create a brand new prompt of the same domain, rarer and of similar length and "
        "difficulty. Reply with the created prompt only.\n#Given Prompt#:\n{prompt}\n"
        "#Created Prompt#:"
    ),
}
_SCAFFOLD = re.compile(r"#?\s*(given|rewritten|created)\s+prompt\s*#?", re.IGNORECASE)
_REFUSAL = re.compile(r"\b(sorry|i cannot|i can't|as an ai)\b", re.IGNORECASE)


def eliminated(parent: str, child: str | None, similarity_max: float) -> str | None:
    """Why an evolution failed, or None when it is kept."""
    if not child or not child.strip():
        return "empty evolution"
    if _SCAFFOLD.search(child):
        return "copied the rewriting scaffold"
    if _REFUSAL.search(child):
        return "refusal"
    score = rouge_l(parent, child)
    if score > similarity_max:
        return f"no information gained (ROUGE-L {score:.2f} to its parent)"
    return None


class EvolInstruct:
    name = "evol-instruct"

    def __init__(self, recipe: Recipe) -> None:
        assert isinstance(recipe.generation.strategy, EvolInstructStrategy)
        self.recipe = recipe
        self.cfg = recipe.generation.strategy

    def plan(self) -> list[WorkItem]:
        return plan_template_items(self.recipe, self.recipe.generation.n)

    def restore(self, records: list[Record]) -> None:
        return None

    def estimate(self, item: WorkItem) -> tuple[int, int]:
        return self.cfg.rounds + 1, (self.cfg.rounds + 2) * estimate_messages(item.messages())

    def _operation(self, item: WorkItem, round_: int) -> str:
        return request_rng(self.recipe.seed, item.index, f"evol-{round_}").choice(
            self.cfg.operations
        )

    def run(self, items: list[WorkItem], engine: GenerationEngine) -> list[list[Output]]:
        current = {i: str(it.render()["prompt"]) for i, it in enumerate(items)}
        chains: dict[int, list[dict[str, str]]] = {i: [] for i in current}
        spent: dict[int, list[Reply]] = {i: [] for i in current}
        failed: dict[int, str] = {}
        for round_ in range(self.cfg.rounds):
            alive = [i for i in current if i not in failed]
            ops = {i: self._operation(items[i], round_) for i in alive}
            requests = [
                GenerationRequest(
                    items[i].key,
                    [{"role": "user", "content": OPERATIONS[ops[i]].format(prompt=current[i])}],
                    None,
                    items[i].index,
                )
                for i in alive
            ]
            for i, reply in zip(alive, ask(engine, requests), strict=True):
                spent[i].append(reply)
                child = reply.text.strip() if reply.text else None
                why = reply.error or eliminated(current[i], child, self.cfg.similarity_max)
                if why:
                    failed[i] = f"evol-instruct: round {round_ + 1} ({ops[i]}) eliminated: {why}"
                    continue
                assert child is not None
                chains[i].append({"operation": ops[i], "instruction": child})
                current[i] = child
        alive = [i for i in current if i not in failed]
        answers = self._answer(items, alive, current, engine)
        outputs = []
        for i, item in enumerate(items):
            lineage = {"evolution": chains[i], "origin": str(item.render()["prompt"])}
            prompt = [{"role": "user", "content": current[i]}]
            if i in failed:
                outputs.append([Output(prompt, failed[i], {**lineage, **usage_lineage(*spent[i])})])
                continue
            request, answer = answers[i]
            messages = list(request.messages)
            if answer.text is not None:
                messages.append({"role": "assistant", "content": answer.text})
            usage = usage_lineage(*spent[i], answer)
            outputs.append([Output(messages, answer.error, {**lineage, **usage})])
        return outputs

    def _answer(
        self,
        items: list[WorkItem],
        alive: list[int],
        current: dict[int, str],
        engine: GenerationEngine,
    ) -> dict[int, tuple[GenerationRequest, Reply]]:
        requests = []
        for i in alive:
            system = items[i].render()["system"]
            messages = [{"role": "system", "content": str(system)}] if system else []
            messages.append({"role": "user", "content": current[i]})
            requests.append(GenerationRequest(items[i].key, messages, None, items[i].index))
        replies = ask(engine, requests)
        return {i: (q, r) for i, q, r in zip(alive, requests, replies, strict=True)}


plugins.register_strategy("evol-instruct", EvolInstruct, config=EvolInstructStrategy)
