"""The prompts the generation and rules suites answer, with their reference replies.

Question-answer records of the test split come first: their non-assistant turns are the
prompt and the assistant turn the reference. A test split without any (plain-text real data
such as headlines) cannot be answered, so fresh prompts are drawn from the recipe's templates
with a seed the generate stage does not use (``recipe.seed + TEMPLATE_SEED_OFFSET``); the
rendered ``response`` template, when there is one, is the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

from synthtune.config import Recipe
from synthtune.errors import RecipeError
from synthtune.records import Message, Record
from synthtune.templates import CompiledTemplate, compile_template, request_rng

TEMPLATE_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class EvalPrompt:
    messages: list[Message]  # system and user turns, up to the reply
    reference: str | None


def _qa_prompt(record: Record) -> EvalPrompt | None:
    turns = record.payload.messages
    first = next((i for i, m in enumerate(turns) if m.role == "assistant"), None)
    if first is None or not any(m.role == "user" for m in turns[:first]):
        return None
    return EvalPrompt(messages=list(turns[:first]), reference=turns[first].content)


def template_prompts(recipe: Recipe, n: int) -> list[EvalPrompt]:
    """``n`` prompts drawn from the templates that need nothing but their own slots
    (templates filled from examples or document chunks are left out), picked by weight."""
    if recipe.generate is None:  # a real-data-only recipe has no templates
        return []
    compiled: list[CompiledTemplate] = []
    for cfg in recipe.generate.templates if recipe.generate is not None else []:
        try:
            compiled.append(compile_template(cfg))
        except RecipeError:
            continue
    if not compiled:
        return []
    seed = recipe.seed + TEMPLATE_SEED_OFFSET
    weights = [t.config.weight for t in compiled]
    prompts = []
    for index in range(n):
        template = request_rng(seed, index, "evaluate:template").choices(compiled, weights)[0]
        text = template.render(template.sample_slots(seed, index))
        messages = [Message(role="system", content=text["system"])] if text["system"] else []
        messages.append(Message(role="user", content=str(text["prompt"])))
        prompts.append(EvalPrompt(messages=messages, reference=text["response"]))
    return prompts


def eval_prompts(recipe: Recipe, test: list[Record], n: int) -> tuple[str, list[EvalPrompt]]:
    """``(source, prompts)``: source is ``test split (real)``, ``test split (synthetic)`` or
    ``templates``; at most ``n`` prompts."""
    qa = [(r.source, p) for r in test if (p := _qa_prompt(r)) is not None][:n]
    if qa:
        kinds = sorted({source for source, _ in qa})
        return f"test split ({', '.join(kinds)})", [p for _, p in qa]
    return "templates", template_prompts(recipe, n)
