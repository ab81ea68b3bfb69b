"""The request plan: which template and which slot values request ``i`` gets.

Pure and deterministic in ``(seed, i, generate config)``: resume and re-runs rebuild exactly
the same plan, and each request's key identifies it across interruptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synthtune.config import GenerateConfig
from synthtune.generate.templates import CompiledTemplate, compile_template, request_rng
from synthtune.records import content_hash


@dataclass(frozen=True)
class PlannedRequest:
    index: int
    key: str
    template: CompiledTemplate
    slots: dict[str, Any]
    rendered: dict[str, str | None]

    def messages(self) -> list[dict[str, str]]:
        out = []
        if self.rendered["system"]:
            out.append({"role": "system", "content": self.rendered["system"]})
        out.append({"role": "user", "content": str(self.rendered["prompt"])})
        return out


def compile_templates(cfg: GenerateConfig) -> list[CompiledTemplate]:
    return [
        compile_template(t, where=f"generate.templates.{i}") for i, t in enumerate(cfg.templates)
    ]


def plan_requests(cfg: GenerateConfig, seed: int) -> list[PlannedRequest]:
    templates = compile_templates(cfg)
    weights = [t.config.weight for t in templates]
    backend = cfg.backend.model_dump(mode="json")
    plan = []
    for index in range(cfg.n):
        template = request_rng(seed, index, "template").choices(templates, weights=weights)[0]
        slots = template.sample_slots(request_rng(seed, index, template.config.id))
        rendered = template.render(slots)
        key = content_hash(
            {
                "i": index,
                "seed": seed,
                "template": template.config.model_dump(mode="json"),
                "slots": slots,
                "backend": backend,
            }
        )
        plan.append(PlannedRequest(index, key, template, slots, rendered))
    return plan
