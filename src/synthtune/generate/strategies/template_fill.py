"""template-fill: render the template, the model answers (structured when a schema is set)."""

from __future__ import annotations

from synthtune import plugins
from synthtune.config import Recipe
from synthtune.config.generate import TemplateFillStrategy
from synthtune.generate.strategies.base import (
    Output,
    WorkItem,
    item_requests,
    plan_template_items,
    single_call_estimate,
    split_renderable,
    usage_lineage,
)
from synthtune.llm.engine import GenerationEngine
from synthtune.llm.structured import ask
from synthtune.records import Record, content_hash


class TemplateFill:
    name = "template-fill"
    independent_batches = True  # no state across batches: the stage may overlap two

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe

    def plan(self) -> list[WorkItem]:
        return plan_template_items(self.recipe, self.recipe.generation.n)

    def restore(self, records: list[Record]) -> None:
        return None

    def estimate(self, item: WorkItem) -> tuple[int, int]:
        return single_call_estimate(item)

    def run(self, items: list[WorkItem], engine: GenerationEngine) -> list[list[Output]]:
        renderable, failed = split_renderable(items)
        requests = item_requests(renderable)
        schemas = [it.template.config.json_schema for it in renderable]
        reasks = max((it.template.config.max_reasks for it in renderable), default=0)
        replies = ask(engine, requests, schemas, reasks)
        done: dict[str, list[Output]] = {k: [output] for k, output in failed.items()}
        for item, reply in zip(renderable, replies, strict=True):
            messages = item.messages()  # the few-shot examples stay out of the record
            if reply.text is not None:
                messages.append({"role": "assistant", "content": reply.text})
            label = item.render()["label"]
            lineage = usage_lineage(reply)
            if item.few_shot:
                lineage["few_shot"] = [e.get("id") or content_hash(e)[:12] for e in item.few_shot]
            done[item.key] = [Output(messages, reply.error, lineage, label)]
        return [done[item.key] for item in items]


plugins.register_strategy("template-fill", TemplateFill, config=TemplateFillStrategy)
