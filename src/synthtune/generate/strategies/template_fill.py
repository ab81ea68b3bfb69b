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
    usage_lineage,
)
from synthtune.llm.engine import GenerationEngine
from synthtune.llm.structured import ask
from synthtune.records import Record


class TemplateFill:
    name = "template-fill"

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe

    def plan(self) -> list[WorkItem]:
        return plan_template_items(self.recipe, self.recipe.generation.n)

    def restore(self, records: list[Record]) -> None:
        return None

    def estimate(self, item: WorkItem) -> tuple[int, int]:
        return single_call_estimate(item)

    def run(self, items: list[WorkItem], engine: GenerationEngine) -> list[list[Output]]:
        requests = item_requests(items)
        schemas = [it.template.config.json_schema for it in items]
        reasks = max((it.template.config.max_reasks for it in items), default=0)
        replies = ask(engine, requests, schemas, reasks)
        outputs = []
        for item, reply, request in zip(items, replies, requests, strict=True):
            messages = list(request.messages)
            if reply.text is not None:
                messages.append({"role": "assistant", "content": reply.text})
            label = item.render()["label"]
            outputs.append([Output(messages, reply.error, usage_lineage(reply), label)])
        return outputs


plugins.register_strategy("template-fill", TemplateFill, config=TemplateFillStrategy)
