"""Generation arms: template x strategy x temperature bucket, and the recipe each one runs.

An arm's recipe is the user's recipe narrowed to one template, one strategy and one
temperature, with ``n`` = the requests the bandit gave it and a seed derived from (seed, round,
arm), so every round samples new slot values while a resumed round samples the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthtune.config import FewShotConfig, GenerateConfig, Recipe
from synthtune.records import content_hash

FEW_SHOT_PER_PROMPT = 2  # reviewers' corrections shown per request (when there are any)


@dataclass(frozen=True)
class Arm:
    name: str
    template: str
    strategy: dict[str, Any]
    temperature: float | None

    def recipe(
        self,
        base: Recipe,
        requests: int,
        round_number: int,
        few_shot: Path | None = None,
    ) -> Recipe:
        """``few_shot``: a file of reviewers' corrections shown as worked examples (a
        template-fill arm only; the user's own ``generate.few_shot`` otherwise stays)."""
        gen = base.generation
        template = next(t for t in gen.templates if t.id == self.template)
        backend = gen.backend
        if self.temperature is not None:
            backend = backend.model_copy(update={"temperature": self.temperature})
        generate = GenerateConfig.model_validate(
            {
                **gen.model_dump(mode="python", by_alias=True),
                "n": requests,
                "templates": [template.model_dump(mode="python", by_alias=True)],
                "strategy": self.strategy,
                "backend": backend.model_dump(mode="python"),
            }
        )
        if few_shot is not None and generate.strategy.type == "template-fill":
            generate = generate.model_copy(
                update={"few_shot": FewShotConfig(file=few_shot, per_prompt=FEW_SHOT_PER_PROMPT)}
            )
        seed = int(content_hash([base.seed, round_number, self.name])[:8], 16)
        return base.model_copy(update={"generate": generate, "seed": seed})


def build_arms(recipe: Recipe) -> list[Arm]:
    """Every combination the ``evolve`` section allows (templates x strategies x temperatures)."""
    cfg = recipe.evolve
    gen = recipe.generation
    templates = cfg.templates or [t.id for t in gen.templates]
    strategies = [s.model_dump(mode="json") for s in (cfg.strategies or [gen.strategy])]
    temperatures: list[float | None] = list(cfg.temperatures) if cfg.temperatures else [None]
    arms = []
    for template in templates:
        for strategy in strategies:
            for temperature in temperatures:
                parts = [template]
                if len(strategies) > 1:
                    parts.append(strategy["type"])
                if temperature is not None:
                    parts.append(f"t{temperature:g}")
                arms.append(Arm("/".join(parts), template, strategy, temperature))
    return arms
